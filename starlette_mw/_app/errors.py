"""Headers from the package's middleware on the 500 that Starlette renders when an endpoint raises.

Starlette's `ServerErrorMiddleware` is the outermost layer of every app. When an exception
escapes the app, it renders the 500 (with the app's own handler for 500 / `Exception`, if any)
and sends it with the server's `send`, so no user middleware sees that response; then it
re-raises, so the server logs the exception. A middleware that caught the exception and
answered the 500 itself would run the app's handler a second time and hide the exception from
any middleware registered outside it. Instead, `install(app)` (in decorator.py) builds the app's
stack with `ErrorResponseMiddleware` in place of Starlette's: a subclass, whose `send` gives
the response that goes out after an exception the edits that middleware registered in the
request's record when the exception went through them (`_request_record.py`). A request that
raises nothing costs it one small record; `App` (and `MiddlewareMixin`) do the same without the call.

An edit that raised for a request (on its response start) is not run again on its 500: the same
request would fail it the same way, and a 500 that cannot be sent leaves the server only its bare
fallback. One that raises on the 500 itself is dropped there, and logged. The 500 goes out with
the headers of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._registration import is_async
from starlette_mw._request_record import SCOPE_KEY, Edit, Headers, RequestRecord

__all__ = ["ErrorResponseMiddleware", "with_error_headers"]

logger = logging.getLogger("starlette_mw")


class ErrorResponseMiddleware(ServerErrorMiddleware):
    """Starlette's `ServerErrorMiddleware`, whose `send` also gives the middleware's registered edits
    to the response that goes out after an exception: its own 500, or one that a middleware outside
    the failing one sent instead (an `@app.middleware` that caught the exception, say).

    It renders the 500 with Starlette's own methods and the app's handler; `__call__` is its own
    only so that one `send` wrapper does both jobs, where a layer outside Starlette's would add one
    more call to every message of every response.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Made here, before any middleware can copy the scope: every copy then shares it.
        record: RequestRecord | None = scope.get(SCOPE_KEY)
        if record is None:
            record = scope[SCOPE_KEY] = RequestRecord()
        elif record.error_edits is not None:
            # An App mounted inside another: the outer one applies the edits, on the response as it
            # leaves the whole app (the inner 500 goes out through it too).
            await super().__call__(scope, receive, send)
            return
        edits: dict[object, Edit | None] = {}
        record.error_edits = edits
        started = False

        def send_edited(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if edits:
                    message = {**message, "headers": _apply(edits, list(message.get("headers", ())))}
            return send(message)

        try:
            await self.app(scope, receive, send_edited)
        except Exception as exc:
            response = await self.render(Request(scope), exc)
            if not started:
                await response(scope, receive, send_edited)
            raise  # for the server's log, as Starlette's does

    async def render(self, request: Request, exc: Exception) -> ASGIApp:
        """The error response, as Starlette's chooses it: its debug page, the app's handler, or its plain 500."""
        if self.debug:
            return await run_in_threadpool(self.debug_response, request, exc)
        if self.handler is None:
            return self.error_response(request, exc)
        handler: Any = self.handler  # (typed by Starlette as a handler of a Request or of a WebSocket)
        if is_async(handler):
            response: ASGIApp = await handler(request, exc)
            return response
        return await run_in_threadpool(handler, request, exc)


def with_error_headers(stack: ASGIApp) -> ASGIApp:
    """The app's built stack with `ErrorResponseMiddleware` in place of its outermost `ServerErrorMiddleware`.

    Starlette and FastAPI both build one there. A stack that starts otherwise is returned as it is:
    the middleware then log that they cannot reach the error response, as in an app without `install()`.
    """
    if type(stack) is not ServerErrorMiddleware:
        return stack
    return ErrorResponseMiddleware(stack.app, handler=stack.handler, debug=stack.debug)


def _apply(edits: dict[object, Edit | None], headers: Headers) -> Headers:
    """The innermost middleware registered first and edits first, as on a response start; an edit
    that raises is left out (and not tried again on this response)."""
    for owner, edit in list(edits.items()):
        if edit is None:
            continue
        try:
            headers = edit(list(headers))
        except Exception:
            edits[owner] = None
            logger.exception(
                "%s raised while adding its headers to the error response, which goes out without them.",
                type(owner).__name__,
            )
    return headers
