"""Headers from the package's middleware on the 500 that Starlette renders when an endpoint raises.

Starlette's `ServerErrorMiddleware` is the outermost layer of every app. When an exception
escapes the app, it renders the 500 (with the app's own handler for 500 / `Exception`, if any)
and sends it with the server's `send`, so no user middleware sees that response; then it
re-raises, so the server logs the exception. A middleware that caught the exception and
answered the 500 itself would run the app's handler a second time and hide the exception from
any middleware registered outside it. Instead, `install(app)` puts one thin layer outside
`ServerErrorMiddleware`: a middleware whose response never started when an exception went
through it registers a send wrapper in the scope, and that layer applies it to whatever response
then goes out. `App` (and `MiddlewareMixin`) install it themselves.

A send wrapper that raised for a request (`send_wrapper_failed`) is not run again on its 500: the
same request would fail it the same way, and a 500 that cannot be sent leaves the server only its
bare fallback. One that raises on the 500 itself is dropped there, and logged. The 500 goes out with
the headers of the others.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._registration import check_middleware

__all__ = ["ErrorResponseLayer", "install", "response_started", "send_wrapper_failed", "wrap_error_response"]

SendWrapper = Callable[[Send], Send]

_SCOPE_KEY = "starlette_mw.error_response"
_installed: weakref.WeakSet[Starlette] = weakref.WeakSet()

logger = logging.getLogger("starlette_mw")
_warned: weakref.WeakSet[BaseHTTPMiddleware] = weakref.WeakSet()


class ErrorResponseLayer:
    """The layer outside `ServerErrorMiddleware` that `install()` adds; see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _SCOPE_KEY in scope:
            # A mounted App inside another: the outer layer applies what middleware register, on
            # the response as it leaves the whole app (the inner 500 goes out through it too).
            await self.app(scope, receive, send)
            return
        # None for a middleware whose send wrapper raised for this request.
        wrappers: dict[BaseHTTPMiddleware, SendWrapper | None] = {}
        # Some middleware copy the scope; the dict travels with each copy, so all register here.
        scope[_SCOPE_KEY] = wrappers

        async def send_response(message: Message) -> None:
            if not wrappers:
                await send(message)
                return
            # The innermost middleware registered first and edits the response first, as its own
            # send wrapper would have done.
            wrapped = send
            for owner, wrap in reversed(list(wrappers.items())):
                if wrap is not None:
                    wrapped = _guarded(wrappers, owner, wrap, wrapped)
            await wrapped(message)

        await self.app(scope, receive, send_response)


def _guarded(
    wrappers: dict[BaseHTTPMiddleware, SendWrapper | None], owner: BaseHTTPMiddleware, wrap: SendWrapper, send: Send
) -> Send:
    """`wrap(send)`, except that a message it raises on before passing it on goes on without it."""
    passed = False

    async def inner(message: Message) -> None:
        nonlocal passed
        passed = True
        await send(message)

    async def guarded(message: Message) -> None:
        try:
            await wrap(inner)(message)
        except Exception:
            if passed:  # raised further out (the client left, say), not by this wrapper
                raise
            wrappers[owner] = None  # nor on the rest of this response
            logger.exception(
                "%s raised while adding its headers to the error response, which goes out without them.",
                type(owner).__name__,
            )
            await send(message)

    return guarded


def wrap_error_response(scope: Scope, wrap: SendWrapper, owner: BaseHTTPMiddleware, *, warn: bool) -> None:
    """Have the response that goes out for this request after an exception pass through `wrap`.

    A middleware calls this whenever an exception (or a cancellation) escapes its app, even after
    a response start passed through it: a start held back by a middleware outside it (GZip holds
    it until the first body chunk) or refused there never reaches the client, and the error
    response needs the headers then. Without the layer (an app that is neither `App` nor
    installed), logs once per `owner` (the middleware instance) how to fix it, if `warn`.
    """
    wrappers: dict[BaseHTTPMiddleware, SendWrapper | None] | None = scope.get(_SCOPE_KEY)
    if wrappers is not None:
        if owner not in wrappers or wrappers[owner] is not None:  # (None: it raised for this request)
            wrappers[owner] = wrap
    elif warn and owner not in _warned:
        _warned.add(owner)
        logger.warning(
            "%s could not add its headers to the error response: Starlette sends its 500 from "
            "ServerErrorMiddleware, outside every middleware. Use starlette_mw.App, or call "
            "starlette_mw.install(app) before the app starts.",
            type(owner).__name__,
        )


def response_started(scope: Scope, owner: BaseHTTPMiddleware) -> None:
    """A response start passed through `owner`: drop what it registered for an earlier error.

    A middleware outside it that retried the app after the error (or answered it itself through
    the app) sends a response that `owner` has already edited.
    """
    wrappers: dict[BaseHTTPMiddleware, SendWrapper | None] | None = scope.get(_SCOPE_KEY)
    if wrappers:
        wrappers.pop(owner, None)


def send_wrapper_failed(scope: Scope, owner: BaseHTTPMiddleware) -> None:
    """`owner`'s send wrapper raised for this request: the error response goes out without it.

    Call it where the wrapper catches its own failure, then re-raise. Run again on the 500, it would
    fail the same way (a function of the request that raised, say), and the 500 could not be sent.
    """
    wrappers: dict[BaseHTTPMiddleware, SendWrapper | None] | None = scope.get(_SCOPE_KEY)
    if wrappers is not None:
        wrappers[owner] = None


def install(app: Starlette) -> Starlette:
    """Let the package's middleware put their headers on the 500 that Starlette renders.

    For any Starlette or FastAPI app; `starlette_mw.App` needs no call. Call it before the app
    serves its first request, in any order with `add_middleware`. Returns the app.

    It also checks the options of the package's middleware where they are given: those the app
    has so far (from `middleware=[...]` too) at this call, later ones at `app.add_middleware`. On
    an app without it, Starlette has no hook to check them until it builds the stack, on the first
    request or lifespan event.

        app = FastAPI()
        starlette_mw.install(app)
        app.add_middleware(TimingMiddleware)
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"install() takes a Starlette or FastAPI app, not {type(app).__name__}.")
    from starlette_mw._app.decorator import MiddlewareMixin  # the decorator module imports this one

    if app in _installed or isinstance(app, MiddlewareMixin):
        return app
    if app.middleware_stack is not None:
        raise RuntimeError(
            "install() was called after the app built its middleware stack (on its first request); "
            "call it right after creating the app."
        )
    check_middleware(app.user_middleware)
    build = app.build_middleware_stack
    add = app.add_middleware

    def build_middleware_stack() -> ASGIApp:
        return ErrorResponseLayer(build())

    def add_middleware(middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        check_middleware([Middleware(middleware_class, *args, **kwargs)])
        add(middleware_class, *args, **kwargs)

    # Starlette builds the stack through this method, on the first request; wrap this app's only.
    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    app.add_middleware = add_middleware  # type: ignore[method-assign]
    _installed.add(app)
    return app
