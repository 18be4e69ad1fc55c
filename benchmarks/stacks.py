"""The forms of one app that `end_to_end.py` loads under uvicorn.

The same app (one route, `GET /` answering "hello") with the three middlewares every app ends up
writing, in the forms a user chooses between:

- `bare`: no middleware;
- `tutorial`: the FastAPI-tutorial way: `BaseHTTPMiddleware` dispatch functions for the
  process-time header and for legacy redirects, and Starlette's `CORSMiddleware`;
- `decorator`: the same two functions through this package's `@app.middleware("http")`;
- `package`: this package's `TimingMiddleware`, `RedirectMiddleware` with 1,000 rules and
  `CORSMiddleware` with the "strict" preset: the tutorial's CORS policy (named origins, no
  credentials, simple methods);
- `headers_only`: no middleware, but the endpoint returns the headers that `package` adds: what
  the server's writing of those headers costs by itself, the best any middleware adding them can do.

Each benchmark request is `GET /` from an allowed origin, so every layer does its work (CORS
checks the origin and edits the response; the redirect layers look the path up and pass it on).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Message

import starlette_mw
from benchmarks.apps import ORIGIN, Variant
from benchmarks.overhead import make_receive, make_scope
from starlette_mw import App, CallNext, Redirect, RedirectMiddleware, TimingMiddleware

__all__ = ["LEGACY", "STACKS", "bare", "decorator", "headers_only", "package", "tutorial"]

# 1,000 legacy URLs, as a site that moved its pages keeps them.
LEGACY = {f"/archive/{year}/{n}": f"/posts/{year}-{n}" for year in range(2000, 2010) for n in range(100)}


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


ROUTES = [Route("/", hello)]


async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
    """FastAPI's tutorial dispatch function."""
    start_time = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = str(time.perf_counter() - start_time)
    return response


async def redirect_legacy_urls(request: Request, call_next: CallNext) -> Response:
    """The hand-written redirect middleware of the tutorials: a dictionary of old paths."""
    target = LEGACY.get(request.url.path)
    if target is not None:
        return RedirectResponse(target, status_code=301)
    return await call_next(request)


def bare() -> Starlette:
    return Starlette(routes=ROUTES)


def tutorial() -> Starlette:
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(CORSMiddleware, allow_origins=[ORIGIN]),
            Middleware(BaseHTTPMiddleware, dispatch=redirect_legacy_urls),
            Middleware(BaseHTTPMiddleware, dispatch=add_process_time_header),
        ],
    )


def decorator() -> Starlette:
    app = App(routes=ROUTES)
    app.middleware("http")(add_process_time_header)
    app.middleware("http")(redirect_legacy_urls)
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN])
    return app


def package() -> Starlette:
    return App(
        routes=ROUTES,
        middleware=[
            # The tutorial's CORS policy (named origins, no credentials, simple methods) as a preset.
            Middleware(starlette_mw.CORSMiddleware, preset="strict", allow_origins=[ORIGIN]),
            Middleware(RedirectMiddleware, rules=[Redirect(old, new) for old, new in LEGACY.items()]),
            Middleware(TimingMiddleware),
        ],
    )


def added_headers() -> list[tuple[bytes, bytes]]:
    """The headers `package` adds to the bare app's response to a benchmark request, from one in-process call."""

    async def start_headers(app: Starlette) -> list[tuple[bytes, bytes]]:
        starts: list[Message] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                starts.append(message)

        await app(make_scope(), make_receive(), send)  # the in-process benchmark's request
        return [(name, value) for name, value in starts[0]["headers"]]

    def call(app: Starlette) -> list[tuple[bytes, bytes]]:
        # In a thread of its own: uvicorn calls app factories from inside its running event loop.
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, start_headers(app)).result()

    bare_names = {name for name, _ in call(bare())}
    return [(name, value) for name, value in call(package()) if name not in bare_names]


async def hello_with_headers(request: Request) -> Response:
    response = PlainTextResponse("hello")
    response.raw_headers.extend(request.app.state.headers)
    return response


def headers_only() -> Starlette:
    app = Starlette(routes=[Route("/", hello_with_headers)])
    app.state.headers = added_headers()
    return app


STACKS: tuple[Variant, ...] = (
    Variant(label="bare", factory=bare),
    Variant(label="FastAPI-tutorial way (BaseHTTPMiddleware x2, Starlette CORS)", factory=tutorial),
    Variant(label="starlette_mw decorator (same functions, Starlette CORS)", factory=decorator),
    Variant(label="starlette_mw middleware (Timing, Redirect 1,000 rules, CORS preset)", factory=package),
    Variant(label="no middleware, the endpoint sending the same headers", factory=headers_only),
)
