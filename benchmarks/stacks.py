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
- `expert`: what an engineer would write by hand for the same job, in plain ASGI with no code of
  this package: Starlette's `CORSMiddleware` with the "strict" preset's policy, a middleware that
  adds X-Process-Time to the response start, and a dictionary lookup for the 1,000 redirects;
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
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import starlette_mw
from benchmarks.apps import ORIGIN, Variant
from benchmarks.overhead import make_receive, make_scope
from starlette_mw import App, CallNext, Redirect, RedirectMiddleware, TimingMiddleware

__all__ = ["LEGACY", "STACKS", "bare", "decorator", "expert", "headers_only", "package", "tutorial"]

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


class ProcessTime:
    """X-Process-Time on the response start, in plain ASGI: the header the tutorial's function adds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Process-Time", f"{time.perf_counter() - start:.6f}")
            await send(message)

        await self.app(scope, receive, send_with_time)


class LegacyRedirects:
    """The redirects as a dictionary of old paths, in plain ASGI: 301 for GET and HEAD, 308 otherwise."""

    def __init__(self, app: ASGIApp, *, targets: dict[str, str]) -> None:
        self.app = app
        self.targets = targets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.targets.get(scope["path"]) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        status = 301 if scope["method"] in ("GET", "HEAD") else 308
        await RedirectResponse(target, status_code=status)(scope, receive, send)


def expert() -> Starlette:
    return Starlette(
        routes=ROUTES,
        middleware=[
            # The "strict" preset's policy, written out.
            Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET", "HEAD"], max_age=600),
            Middleware(LegacyRedirects, targets=LEGACY),
            Middleware(ProcessTime),
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
    Variant(label="hand-written plain ASGI (Starlette CORS, process time, dict redirects)", factory=expert),
    Variant(label="no middleware, the endpoint sending the same headers", factory=headers_only),
)
