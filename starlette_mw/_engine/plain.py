"""The base of the package's own middleware: a `BaseHTTPMiddleware` that does its work as plain ASGI."""

from __future__ import annotations

import functools
from typing import ClassVar

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw._engine.exchange import Exchange
from starlette_mw._layers import OrderRule, check_order
from starlette_mw._paths import PathFilter, PathPatterns
from starlette_mw._registration import CheckedOptions, check_dispatch


class PlainMiddleware(CheckedOptions, BaseHTTPMiddleware):
    """Subclasses implement `__call__` for HTTP requests on their paths, opening with the test that
    hands everything else to `pass_on`:

        async def __call__(self, scope, receive, send, checked=False):
            if not (checked or self.direct) or scope["type"] != "http":
                return await self.pass_on(scope, receive, send)
            ...  # the middleware's work: wrap `send` (or answer), then `await self.app(...)`

    It costs what plain ASGI costs: no task, no stream, the body is never held, one coroutine per
    request (the test is in each subclass so that the work needs no second one). `pass_on` sends
    other scope types, and requests outside `include=` / `exclude=`, straight to the app, and the
    rest back with `checked=True`. A user subclass that overrides `dispatch` gets the
    `BaseHTTPMiddleware` behaviour on top: its `call_next` runs the middleware's work and the app
    behind it.

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
        # Every HTTP request is the middleware's to handle at once: the usual setup.
        self.direct = self.paths.everything and not self._dispatches

    async def __call__(self, scope: Scope, receive: Receive, send: Send, checked: bool = False) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(scope, receive, send, checked=False)."
        )

    async def pass_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What `__call__` does with a request that is not its to handle at once; see the class's docstring."""
        if scope["type"] != "http" or not (self.paths.everything or self.paths(scope)):
            await self.app(scope, receive, send)
        elif self._dispatches:
            work = functools.partial(self.__call__, checked=True)
            await Exchange(work, scope, receive, send).handle(self.dispatch_func)
        else:
            await self(scope, receive, send, checked=True)
