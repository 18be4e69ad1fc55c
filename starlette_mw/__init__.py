"""Starlette middleware done properly: `@app.middleware("http")` back, and cheap."""

from starlette_mw._app.decorator import App, MiddlewareMixin, middleware
from starlette_mw._app.errors import install
from starlette_mw._app.routers import add_middleware
from starlette_mw._app.stack import Stack, describe
from starlette_mw._cors.middleware import CORSMiddleware, CORSPolicy
from starlette_mw._engine.http_middleware import CallNext, DispatchFunction, HTTPMiddleware
from starlette_mw._paths import PathFilter
from starlette_mw._redirects.middleware import Redirect, RedirectMiddleware, load_redirects
from starlette_mw._timing.middleware import Timer, TimingAllowOrigin, TimingMiddleware, record_timing, timing

__all__ = [
    "App",
    "CORSMiddleware",
    "CORSPolicy",
    "CallNext",
    "DispatchFunction",
    "HTTPMiddleware",
    "MiddlewareMixin",
    "PathFilter",
    "Redirect",
    "RedirectMiddleware",
    "Stack",
    "Timer",
    "TimingAllowOrigin",
    "TimingMiddleware",
    "add_middleware",
    "describe",
    "install",
    "load_redirects",
    "middleware",
    "record_timing",
    "timing",
]
