"""One request's trip through an `HTTPMiddleware`: dispatch, `call_next` and the app behind it.

Starlette's `BaseHTTPMiddleware` runs the app in a task and carries every message of the
response through a memory stream to the dispatch task, which sends it on. Here the app also
runs in a task of its own (dispatch must get its response while the app is still running; the
task starts eagerly, see `tasks.py`), but once dispatch returns the response that `call_next`
gave it, the app's task sends the rest of the response to the server itself: no stream, no task
switch per chunk, and the messages go out as the app wrote them. Only when dispatch reads the
body itself (or returns another response) does the body travel through a stream, as it does in
Starlette.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._engine.parts import AppResponse, DispatchRequest, disconnect, is_last
from starlette_mw._engine.tasks import AppTask

CallNext = Callable[[Request], Awaitable[Response]]
"""The type of `call_next`: it takes the request and returns the response of the rest of the stack.

A dispatch function, typed:

    async def add_server_header(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["X-Server"] = "starlette"
        return response

    app.add_middleware(HTTPMiddleware, dispatch=add_server_header)
"""
DispatchFunction = Callable[[Request, CallNext], Awaitable[Response]]
"""The type of a dispatch function, as `@app.middleware("http")` and `HTTPMiddleware(dispatch=...)` take.

A function that makes dispatch functions:

    def with_header(name: str, value: str) -> DispatchFunction:
        async def dispatch(request: Request, call_next: CallNext) -> Response:
            response = await call_next(request)
            response.headers[name] = value
            return response

        return dispatch

    app.add_middleware(HTTPMiddleware, dispatch=with_header("X-Server", "starlette"))
"""

# How the app's response reaches the client; decided when dispatch returns or starts reading the body.
PENDING, FORWARD, PULL, DISCARD = range(4)

# What call_next answers when the client left before the app sent a response (nginx's convention);
# BaseHTTPMiddleware raises RuntimeError("No response returned.") there instead.
CLIENT_CLOSED_REQUEST = 499


class Exchange(AppTask):
    """The state of one request between dispatch (in the caller's task) and the app (in its own)."""

    __slots__ = (
        "app_context",
        "called",
        "debug",
        "decided",
        "forwarded",
        "mode",
        "pipe_recv",
        "pipe_send",
        "receive_scopes",
        "request",
        "response",
        "response_sent",
        "send",
        "start",
        "started",
    )

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(app, scope)
        self.send = send
        self.request = DispatchRequest(scope, receive, send)
        self.mode = PENDING
        self.called = False
        self.start: Message | None = None
        self.debug: Message | None = None
        self.app_context: contextvars.Context | None = None
        self.response: AppResponse | None = None
        self.pipe_send: MemoryObjectSendStream[Message] | None = None
        self.pipe_recv: MemoryObjectReceiveStream[Message] | None = None
        self.receive_scopes: set[anyio.CancelScope] | None = None
        # One-way states (see `AppTask.until`):
        self.started = False  # the app sent http.response.start, or ended
        self.decided = False  # `mode` is no longer PENDING
        self.forwarded = False  # FORWARD: the app's response has reached the client, or the app ended
        self.response_sent = False  # dispatch's response reached the client

    async def handle(self, dispatch: DispatchFunction) -> None:
        try:
            try:
                await self.respond(dispatch)
            except BaseException:
                if self.launched:  # dispatch failed: stop the app where it waits
                    self.cancel()
                raise
            finally:
                if self.launched:
                    await self.join()
        finally:
            # The response refers back to this exchange; without this, every request would wait
            # for the cycle collector instead of being freed when it ends.
            self.response = None
        if self.app_exc is not None:  # not raised by call_next: the app failed after its response started
            try:
                raise self.app_exc
            finally:
                self.app_exc = None  # raised from the attribute: a local would make a cycle with its traceback

    async def respond(self, dispatch: DispatchFunction) -> None:
        response = await dispatch(self.request, self.call_next)
        if not isinstance(response, Response):
            raise TypeError(
                f"The dispatch function {getattr(dispatch, '__qualname__', dispatch)!r} returned "
                f"{response!r}; it must return a Response, usually the one call_next gave it."
            )
        if response is self.response and self.mode == PENDING and not response.body_touched:
            self.mode = FORWARD  # the app's task sends the rest
            self.decided = True
            if self.waits is not None:
                self.wake("decided")
            if self.eager is not None:
                self.step()
            if response.background is not None:
                # Dispatch's background task runs here, not inside the app's last send(): the app
                # may cancel the task that sends once the client has gone (a StreamingResponse
                # does under ASGI < 2.4, which uvicorn reports), and would cancel it with it.
                await self.until("forwarded")
                try:
                    await response.background()
                finally:
                    self.response_sent = True  # the app's last send() returns: its own background may run
                    if self.waits is not None:
                        self.wake("response_sent")
        else:
            await response(self.scope, self.request.app_receive, self.send)
            self.end_after_response()

    async def call_next(self, request: Request) -> Response:
        if self.called:
            raise RuntimeError("call_next() was awaited twice for one request; a dispatch function may call it once.")
        self.called = True
        self.launch()
        if self.eager is not None:  # Python 3.11's inline steps; 3.12 started it eagerly
            self.step()
        if not self.started:  # the app mostly starts its response in its eager first step
            await self.until("started")
        if self.start is None:
            if self.app_exc is not None:
                try:
                    raise self.app_exc
                finally:
                    self.app_exc = None  # raised from the attribute: a local would make a cycle with its traceback
            if self.request._is_disconnected:
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            raise RuntimeError("No response returned: the app behind this middleware ended without sending one.")
        self.adopt_context()
        self.response = AppResponse(self, self.start)
        return self.response

    def adopt_context(self) -> None:
        """Make context variables the app set before its response visible to dispatch after call_next."""
        for var, value in self.app_context.items() if self.app_context is not None else ():
            if var.get(self) is not value:
                var.set(value)

    def app_ended(self) -> None:
        self.forwarded = True
        if self.waits is not None:
            self.wake("forwarded")
        if self.pipe_send is not None:
            self.pipe_send.close()
        self.started = True
        if self.waits is not None:
            self.wake("started")

    async def app_receive(self) -> Message:
        if self.response_sent:
            return disconnect()
        # Dispatch may answer with a response of its own while the app waits here for the client;
        # then the app is told the client is gone (`end_after_response` cancels this scope).
        if self.receive_scopes is None:
            self.receive_scopes = set()
        with anyio.CancelScope() as scope:
            self.receive_scopes.add(scope)
            try:
                return await self.request.app_receive()
            finally:
                self.receive_scopes.discard(scope)
        return disconnect()

    async def app_send(self, message: Message) -> None:
        if self.mode == FORWARD:
            await self.send(message)
            assert self.start is not None and self.response is not None
            if is_last(message, self.start.get("trailers", False)):
                self.forwarded = True
                if self.waits is not None:
                    self.wake("forwarded")
                if self.response.background is not None:
                    # As in Starlette (and as in PULL below): dispatch's background task first, then the app's.
                    await self.until("response_sent")
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.app_context = contextvars.copy_context()
            self.started = True
            if self.waits is not None:
                self.wake("started")
            await self.until("decided")
            if self.mode == FORWARD:
                assert self.response is not None
                await self.send_start(self.send, self.response)
        elif kind == "http.response.debug" and self.start is None:
            self.debug = message
        elif self.start is None:
            # Early hints, server pushes (`request.send_push_promise`) and anything else ahead of the
            # response go straight to the server: held back, they would wait for dispatch, which
            # waits for the start, and the request would hang.
            await self.send(message)
        elif self.mode == PULL and self.pipe_send is not None:
            try:
                await self.pipe_send.send(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.dropped()
                return
            assert self.start is not None
            if is_last(message, self.start.get("trailers", False)):
                # Like Starlette: the app's own background work starts after the client has it all.
                await self.until("response_sent")
        else:
            await self.dropped()

    async def dropped(self) -> None:
        """The client gets another response than the app's: wait until it is sent, then drop the message."""
        await self.until("response_sent")
        await anyio.lowlevel.checkpoint()

    async def send_start(self, send: Send, response: Response) -> None:
        assert self.start is not None
        if self.debug is not None:
            await send(self.debug)
        # A copy of the app's message, so extra keys such as "trailers" survive.
        await send({**self.start, "status": response.status_code, "headers": response.raw_headers})

    async def pull_body(self) -> AsyncGenerator[bytes | Message, None]:
        if self.mode != PENDING or self.finished:
            return
        self.pipe_send, self.pipe_recv = anyio.create_memory_object_stream[Message](0)
        self.mode = PULL
        self.decided = True
        if self.waits is not None:
            self.wake("decided")
        assert self.start is not None
        trailers = self.start.get("trailers", False)
        with self.pipe_recv:
            async for message in self.pipe_recv:
                kind = message["type"]
                if kind == "http.response.body":
                    body = message.get("body", b"")
                    if body:
                        yield body
                else:
                    yield message
                if is_last(message, trailers):
                    return
        # The app ended before its last message. If it failed, the body must fail too: ending
        # normally would let the response that carries it send a last, empty chunk, and the client
        # would take the truncated body for a complete one.
        if self.app_exc is not None:
            try:
                raise self.app_exc
            finally:
                self.app_exc = None  # raised from the attribute: a local would make a cycle with its traceback

    def end_after_response(self) -> None:
        """Dispatch's response is out: release an app still waiting to send or receive."""
        if self.mode == PENDING:
            self.mode = DISCARD
        self.response_sent = True
        if self.waits is not None:
            self.wake("response_sent")
        self.decided = True
        if self.waits is not None:
            self.wake("decided")
        if self.pipe_recv is not None:
            self.pipe_recv.close()
        for scope in self.receive_scopes or ():
            scope.cancel()
