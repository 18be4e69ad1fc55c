"""The base of the package's own middleware: a `BaseHTTPMiddleware` that does its work as plain ASGI."""

from __future__ import annotations

from typing import ClassVar

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw._engine.exchange import Exchange
from starlette_mw._layers import OrderRule, check_order
from starlette_mw._paths import PathFilter, PathPatterns
from starlette_mw._registration import CheckedOptions, check_dispatch


class PlainMiddleware(CheckedOptions, BaseHTTPMiddleware):
    """Subclasses implement `handle(scope, receive, send)` for HTTP requests on their paths.

    `handle` wraps `send` (or answers by itself) and costs what plain ASGI costs: no task, no
    stream, the body is never held. Other scope types, and requests outside `include=` /
    `exclude=`, go straight to the app. A user subclass that overrides `dispatch` gets the
    `BaseHTTPMiddleware` behaviour on top: its `call_next` runs `handle` and the app behind it.

    A subclass declares its place in the stack: `order_role` names what it is, `order_rules` which
    layers belong outside it (checked, with a warning, as it is built: see `_layers.py`).
    """

    order_role: ClassVar[str | None] = None
    order_rules: ClassVar[tuple[OrderRule, ...]] = ()

    def __init__(self, app: ASGIApp, *, include: PathPatterns = None, exclude: PathPatterns = None) -> None:
        super().__init__(app)
        check_order(self)
        self.paths = PathFilter(include, exclude)
        self._dispatches = type(self).dispatch is not BaseHTTPMiddleware.dispatch
        if self._dispatches:
            check_dispatch(self.dispatch_func)
        # Every HTTP request goes straight to `handle`: one test on the way in, for the usual setup.
        self._direct = self.paths.everything and not self._dispatches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._direct and scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] != "http" or not (self.paths.everything or self.paths(scope)):
            await self.app(scope, receive, send)
        elif self._dispatches:
            await Exchange(self.handle, scope, receive, send).run(self.dispatch_func)
        else:
            await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement handle(scope, receive, send).")
