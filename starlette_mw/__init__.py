"""Starlette middleware done properly: `@app.middleware("http")` back, and cheap."""

from starlette_mw._app.decorator import App, MiddlewareMixin, install, middleware
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

# Each public object reports the package as its home, as httpx's do: tracebacks, `repr` and the docs
# show `starlette_mw.CORSPolicy`, not the private module that happens to define it.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or (callable(_value) and hasattr(_value, "__code__")):
        _value.__module__ = "starlette_mw"
del _name, _value
