"""The app that test_middleware.py tests: save as myapp.py next to it."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext, CORSMiddleware, Redirect, RedirectMiddleware, TimingMiddleware, timing


async def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


async def users(request: Request) -> Response:
    with timing(request, "db", "load users"):
        await asyncio.sleep(0.001)  # a query
    return JSONResponse(["alice", "bob"])


async def api(request: Request) -> Response:
    return JSONResponse({"ok": True})


def make_app() -> App:
    app = App(
        routes=[
            Route("/", homepage),
            Route("/new", homepage),
            Route("/health", homepage),
            Route("/users", users),
            Route("/api", api, methods=["GET", "PUT"]),
        ]
    )

    @app.middleware("http")
    async def add_process_time(request: Request, call_next: CallNext) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Process-Time"] = str(time.perf_counter() - start)
        return response

    app.add_middleware(RedirectMiddleware, rules=[Redirect("/old", "/new")])  # 301 for GET and HEAD, 308 for others
    app.add_middleware(TimingMiddleware)
    # Registered last, so outermost. "first-party" allows Authorization, Content-Type and
    # X-Requested-With; the app's own X-Key header is added to those.
    app.add_middleware(
        CORSMiddleware,
        preset="first-party",
        allow_origins=["https://app.example.com"],
        allow_headers=["Authorization", "Content-Type", "X-Requested-With", "X-Key"],
    )
    return app
