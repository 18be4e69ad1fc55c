"""Headers from the package's middleware on the 500 that Starlette renders when an endpoint raises.

Starlette's `ServerErrorMiddleware` is the outermost layer of every app. When an exception
escapes the app, it renders the 500 (with the app's own handler for 500 / `Exception`, if any)
and sends it with the server's `send`, so no user middleware sees that response; then it
re-raises, so the server logs the exception. A middleware that caught the exception and
answered the 500 itself would run the app's handler a second time and hide the exception from
any middleware registered outside it. Instead, `install(app)` (in decorator.py) puts one thin
layer outside `ServerErrorMiddleware`: a middleware whose response never started when an
exception went through it registers a send wrapper in the request's record
(`_request_record.py`), and that layer applies it to whatever response then goes out. `App`
(and `MiddlewareMixin`) install it themselves.

A send wrapper that raised for a request (`send_wrapper_failed`) is not run again on its 500: the
same request would fail it the same way, and a 500 that cannot be sent leaves the server only its
bare fallback. One that raises on the 500 itself is dropped there, and logged. The 500 goes out with
the headers of the others.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._request_record import SendWrapper, record_in

__all__ = ["ErrorResponseLayer"]

logger = logging.getLogger("starlette_mw")


class ErrorResponseLayer:
    """The layer outside `ServerErrorMiddleware` that `install()` adds; see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = record_in(scope)  # (the scope's own, for an App mounted inside another)
        if record.error_wrappers is not None:
            # A mounted App inside another: the outer layer applies what middleware register, on
            # the response as it leaves the whole app (the inner 500 goes out through it too).
            await self.app(scope, receive, send)
            return
        # None for a middleware whose send wrapper raised for this request. Some middleware copy
        # the scope; the record travels with each copy, so all register here.
        wrappers: dict[object, SendWrapper | None] = {}
        record.error_wrappers = wrappers

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


def _guarded(wrappers: dict[object, SendWrapper | None], owner: object, wrap: SendWrapper, send: Send) -> Send:
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
