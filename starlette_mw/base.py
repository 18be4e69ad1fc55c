"""`HTTPMiddleware`: Starlette's `BaseHTTPMiddleware`, with a `call_next` that costs far less."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw._exchange import CallNext, DispatchFunction, Exchange
from starlette_mw._registration import CheckedOptions
from starlette_mw.paths import PathFilter, PathPatterns

__all__ = ["CallNext", "DispatchFunction", "HTTPMiddleware", "check_dispatch", "is_async"]


def is_async(func: Any) -> bool:
    """An `async def` function, a partial of one, or an object whose `__call__` is one (as FastAPI allows)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def check_dispatch(func: Any) -> None:
    """Refuse a dispatch function that `call_next` could not run: not async, or not of (request, call_next)."""
    name = getattr(func, "__qualname__", repr(func))
    if not is_async(func):
        raise TypeError(
            f"Middleware function {name!r} is not an 'async def' function; "
            "write it as 'async def f(request, call_next)' and await call_next(request) inside."
        )
    try:
        signature = inspect.signature(func)
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"Middleware function {name!r} takes {signature}; "
            "it must take two parameters, as in 'async def f(request, call_next)'."
        ) from None


class HTTPMiddleware(CheckedOptions, BaseHTTPMiddleware):
    """A drop-in for `BaseHTTPMiddleware`: pass `dispatch=` or override `dispatch`.

    `call_next` returns as soon as the app starts its response, as Starlette's does. When dispatch
    returns that response, the app then streams its body straight to the client. Context
    variables the endpoint sets are visible to dispatch after `call_next`, the app sees client
    disconnects, and requests outside `include=` / `exclude=` skip dispatch entirely.

        class ProcessTime(HTTPMiddleware):
            async def dispatch(self, request, call_next):
                start = time.perf_counter()
                response = await call_next(request)
                response.headers["X-Process-Time"] = str(time.perf_counter() - start)
                return response

        app.add_middleware(ProcessTime, exclude="/health")
    """

    def __init__(
        self,
        app: ASGIApp,
        dispatch: DispatchFunction | None = None,
        *,
        include: PathPatterns = None,
        exclude: PathPatterns = None,
    ) -> None:
        super().__init__(app, dispatch)
        if dispatch is None and type(self).dispatch is BaseHTTPMiddleware.dispatch:
            raise TypeError(
                f"{type(self).__name__} has no dispatch function; pass dispatch=f, or subclass it and "
                "define 'async def dispatch(self, request, call_next)'."
            )
        check_dispatch(self.dispatch_func)
        self.paths = PathFilter(include, exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.paths.everything or self.paths(scope)):
            await self.app(scope, receive, send)
            return
        await Exchange(self.app, scope, receive, send).run(self.dispatch_func)
