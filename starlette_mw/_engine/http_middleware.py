"""`HTTPMiddleware`: Starlette's `BaseHTTPMiddleware`, with a `call_next` that costs far less."""

from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw._engine.exchange import CallNext, DispatchFunction, Exchange
from starlette_mw._paths import PathFilter, PathPatterns
from starlette_mw._registration import CheckedOptions, check_dispatch

__all__ = ["CallNext", "DispatchFunction", "HTTPMiddleware"]


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
        await Exchange(self.app, scope, receive, send).handle(self.dispatch_func)
