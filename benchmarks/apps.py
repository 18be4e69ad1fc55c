"""The apps both benchmarks compare, built the same way so only their middleware differs.

Each variant is a factory returning a fresh app, so the in-process benchmark calls it directly
and uvicorn loads it with `--factory benchmarks.apps:<name>`. To add a row to both benchmarks,
write a factory with `app_with(Middleware(...))` and append a `Variant` to `VARIANTS`; the first
variant is the baseline the others are measured against.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import CallNext, HTTPMiddleware, Redirect, RedirectMiddleware, TimingMiddleware
from starlette_mw import CORSMiddleware as CORSMiddlewareMW

__all__ = [
    "ORIGIN",
    "REDIRECT_PATH",
    "VARIANTS",
    "Variant",
    "app_with",
    "bare",
    "base_http_middleware",
    "http_middleware",
    "http_middleware_excluded",
    "mw_cors",
    "redirects_10",
    "redirects_10000",
    "starlette_cors",
    "timing",
]

# The page origin every benchmark request comes from, which the CORS variants allow: Starlette's
# CORSMiddleware then does its full work for a simple request (checks the origin, sets
# Access-Control-Allow-Origin and Vary), rather than passing a request without Origin straight on.
ORIGIN = "http://localhost:3000"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
    """The dispatch function from FastAPI's middleware tutorial, unchanged."""
    start_time = time.perf_counter()
    response = await call_next(request)
    process_time = time.perf_counter() - start_time
    response.headers["X-Process-Time"] = str(process_time)
    return response


def app_with(*middleware: Middleware, path: str = "/") -> Starlette:
    """The benchmark app (a route answering "hello" at `path`) behind `middleware`."""
    return Starlette(routes=[Route(path, hello)], middleware=list(middleware))


def bare() -> Starlette:
    return app_with()


def base_http_middleware() -> Starlette:
    return app_with(Middleware(BaseHTTPMiddleware, dispatch=add_process_time_header))


def http_middleware() -> Starlette:
    return app_with(Middleware(HTTPMiddleware, dispatch=add_process_time_header))


def http_middleware_excluded() -> Starlette:
    """The request's path is excluded: it goes straight to the app."""
    return app_with(Middleware(HTTPMiddleware, dispatch=add_process_time_header, exclude="/"))


def starlette_cors() -> Starlette:
    """Starlette's own CORSMiddleware: the baseline the package's plain-ASGI middleware are held to."""
    return app_with(Middleware(CORSMiddleware, allow_origins=[ORIGIN]))


def mw_cors() -> Starlette:
    """The package's CORSMiddleware with the same settings as `starlette_cors`."""
    return app_with(Middleware(CORSMiddlewareMW, allow_origins=[ORIGIN]))


def timing() -> Starlette:
    return app_with(Middleware(TimingMiddleware, timing_allow_origin=ORIGIN))


# The path the redirect variants are requested at: it matches no rule, but walks the rules' index
# through the section that holds the last ten rules of either list (see `redirect_rules`).
REDIRECT_PATH = "/s0/x/1"


def redirect_rules(count: int) -> list[Redirect]:
    """`count` rules of every path kind, none of which matches `REDIRECT_PATH`: like a site's legacy URLs.

    Of each ten: six exact paths, two Starlette paths and two regexes, spread over as many first
    path segments as there are rules (a site with 10,000 legacy URLs has many sections). The
    sections count down, so the last ten rules are in section 's0', the one `REDIRECT_PATH` walks:
    the request meets its Starlette paths' wildcard and tries its two regexes, in either list.
    """
    rules: list[Redirect] = []
    for number in range(count):
        section = f"s{(count - 1 - number) // 10}"
        kind = number % 10
        if kind < 6:
            rules.append(Redirect(f"/{section}/page-{number}.html", f"/new/{section}/{number}"))
        elif kind < 8:
            rules.append(Redirect(f"/{section}/{{slug}}/{number}", f"/new/{section}/{{slug}}/{number}"))
        else:
            rules.append(Redirect(re.compile(rf"/{section}/(\d+)-{number}"), f"/new/{section}/{{1}}/{number}"))
    return rules


def redirects_10() -> Starlette:
    return app_with(Middleware(RedirectMiddleware, rules=redirect_rules(10)), path=REDIRECT_PATH)


def redirects_10000() -> Starlette:
    return app_with(Middleware(RedirectMiddleware, rules=redirect_rules(10_000)), path=REDIRECT_PATH)


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One row of a benchmark table: a label and the factory that builds its app."""

    label: str
    factory: Callable[[], Starlette]
    path: str = "/"  # the path each benchmark request asks for; the app answers it with "hello"

    @property
    def import_string(self) -> str:
        """What uvicorn's `--factory` option needs to build this app in another process."""
        return f"{self.factory.__module__}:{self.factory.__name__}"


VARIANTS: tuple[Variant, ...] = (
    Variant(label="bare", factory=bare),
    Variant(label="BaseHTTPMiddleware", factory=base_http_middleware),
    Variant(label="HTTPMiddleware", factory=http_middleware),
    Variant(label="HTTPMiddleware, path excluded", factory=http_middleware_excluded),
    Variant(label="CORSMiddleware (Starlette)", factory=starlette_cors),
    Variant(label="TimingMiddleware", factory=timing),
    Variant(label="CORSMiddleware (starlette_mw)", factory=mw_cors),
    Variant(label="RedirectMiddleware, 10 rules", factory=redirects_10, path=REDIRECT_PATH),
    Variant(label="RedirectMiddleware, 10,000 rules", factory=redirects_10000, path=REDIRECT_PATH),
)
