"""One request's trip through an `HTTPMiddleware`: dispatch, `call_next` and the app behind it.

Starlette's `BaseHTTPMiddleware` runs the app in a task of its own and carries every message of
the response through a memory stream to the dispatch task. That costs a task, a task group and
several passes of the event loop per request, and a task switch per chunk.

Here, by default, there is no task at all. Dispatch runs as a coroutine that this module drives
by hand: until `call_next` it runs in the request's task; then the app runs in that same task,
and the rest of dispatch runs where the app sends `http.response.start`, exactly like the code in
the `send` wrapper of a plain ASGI middleware. If dispatch returns the response `call_next` gave
it, the app sends the body straight to the client. If dispatch reads the body, it is resumed with
each message the app sends.

Two things cannot work that way, and get the app in a task of its own, as in Starlette: a
`call_next` awaited from another task (`asyncio.wait_for(call_next(request), 5)`), and a
`call_next` inside a cancel scope that dispatch holds open across it (`with anyio.fail_after(5):`
or a task group), since that scope must be left in the task that entered it (see `_scopes.py`).
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from typing import Any

import anyio
import anyio.lowlevel
import sniffio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._parts import AppResponse, DispatchRequest, disconnect, is_last
from starlette_mw._scopes import current_cancel_scope

CallNext = Callable[[Request], Awaitable[Response]]
DispatchFunction = Callable[[Request, CallNext], Awaitable[Response]]

# How the app's response reaches the client; decided when dispatch returns or starts reading the body.
PENDING, FORWARD, PULL, DISCARD = range(4)

# What call_next answers when the client left before the app sent a response (nginx's convention);
# BaseHTTPMiddleware raises RuntimeError("No response returned.") there instead.
CLIENT_CLOSED_REQUEST = 499

# What the dispatch coroutine yields to the Exchange (never to the event loop) when it waits for
# the app: for the response to start, or for the next message of the body.
_CALL_NEXT = object()
_PULL = object()


@types.coroutine
def _wait_for_app(token: object) -> Generator[Any, Any, Any]:
    return (yield token)


@types.coroutine
def _step(exchange: Exchange, value: Any = None, error: BaseException | None = None) -> Generator[Any, Any, object]:
    """Run the exchange's dispatch until it waits for the app (returns what for) or ends (None).

    Whatever else dispatch awaits goes up to the event loop of the task that awaits this.
    """
    coro = exchange.coro
    while True:
        exchange.stepping = True
        try:
            yielded = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration:
            exchange.waiting = None  # dispatch has returned
            return None
        except BaseException:
            exchange.waiting = None  # dispatch has raised
            raise
        finally:
            exchange.stepping = False
        if yielded is _CALL_NEXT or yielded is _PULL:
            exchange.waiting = yielded
            return yielded
        try:
            value, error = (yield yielded), None
        except BaseException as exc:  # a cancellation, or what the event loop threw in
            value, error = None, exc


class _DispatchFailed(BaseException):
    """Unwinds the app when dispatch raised while running inside the app's `send`.

    A BaseException, so that the app's exception handlers (which catch Exception) let it through.
    """


class Exchange:
    """The state of one request between dispatch and the app."""

    coro: Coroutine[Any, Any, None]
    cancel_scope: object  # the request task's cancel scope when dispatch starts
    # Only once the app runs in a task of its own (`call_app_task`):
    app_exc: Exception | None
    app_context: contextvars.Context | None
    pipe_send: MemoryObjectSendStream[Message] | None
    pipe_recv: MemoryObjectReceiveStream[Message] | None
    receive_scopes: set[anyio.CancelScope]
    started: anyio.Event
    decided: anyio.Event
    response_sent: anyio.Event
    app_finished: anyio.Event
    app_scope: anyio.CancelScope
    app_done: bool
    exc_raised: bool
    task: object

    __slots__ = (
        "app",
        "app_context",
        "app_done",
        "app_exc",
        "app_finished",
        "app_scope",
        "background",
        "called",
        "cancel_scope",
        "coro",
        "debug",
        "decided",
        "dispatch_exc",
        "exc_raised",
        "mode",
        "pipe_recv",
        "pipe_send",
        "receive_scopes",
        "request",
        "response",
        "response_sent",
        "scope",
        "send",
        "sent",
        "start",
        "started",
        "stepping",
        "task",
        "tasked",
        "waiting",
    )

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.app = app
        self.scope = scope
        self.send = send
        self.request = DispatchRequest(scope, receive, send)
        self.mode = PENDING
        self.called = self.stepping = self.tasked = self.sent = False
        self.waiting: object | None = None
        self.start: Message | None = None
        self.debug: Message | None = None
        self.response: AppResponse | None = None
        self.dispatch_exc: BaseException | None = None
        self.background: Callable[[], Awaitable[None]] | None = None

    # Driving dispatch

    async def run(self, dispatch: DispatchFunction) -> None:
        self.cancel_scope = current_cancel_scope()
        self.coro = self.respond(dispatch)
        try:
            token = await _step(
                self,
            )
            if token is _CALL_NEXT:
                await self.run_app_inline()
            if self.tasked:
                await self.join_app_task()
        except BaseException:
            if self.tasked:  # dispatch failed: stop the app, as BaseHTTPMiddleware's task group would
                self.app_scope.cancel()
                await self.join_app_task()
            raise
        finally:
            # Dispatch's background task runs here, in the request's own task, once the app is done
            # (even if it failed midway, as in Starlette). Inside the app's send() it could be
            # cancelled with the app's sending task, as a StreamingResponse does under ASGI 2.3.
            if self.background is not None:
                await self.background()
        if self.tasked and self.app_exc is not None and not self.exc_raised:
            raise self.app_exc

    async def respond(self, dispatch: DispatchFunction) -> None:
        response = await dispatch(self.request, self.call_next)
        if not isinstance(response, Response):
            raise TypeError(
                f"The dispatch function {getattr(dispatch, '__qualname__', dispatch)!r} returned "
                f"{response!r}; it must return a Response, usually the one call_next gave it."
            )
        self.background, response.background = response.background, None
        if response is self.response and self.mode == PENDING and not response.body_touched:
            self.mode = FORWARD  # the app sends the rest itself
            if self.tasked:
                self.decided.set()
            return
        await response(self.scope, self.request.app_receive, self.send)
        self.end_after_response()

    async def resume(self, value: Any) -> None:
        """Give dispatch what the app sent, from inside the app's `send`."""
        try:
            await _step(self, value)
        except anyio.get_cancelled_exc_class():
            raise  # the app is being cancelled, and dispatch with it
        except BaseException as exc:
            self.dispatch_exc = exc
            raise _DispatchFailed from None

    async def call_next(self, request: Request) -> Response:
        if self.called:
            raise RuntimeError("call_next() was awaited twice for one request; a dispatch function may call it once.")
        self.called = True
        if self.stepping and current_cancel_scope() is self.cancel_scope:
            response: Response = await _wait_for_app(_CALL_NEXT)
            return response
        return await self.call_app_task()

    async def run_app_inline(self) -> None:
        failure: BaseException | None = None
        try:
            await self.app(self.scope, self.app_receive, self.app_send)
        except BaseException as exc:
            failure = exc
        if self.dispatch_exc is not None:
            raise self.dispatch_exc
        token = self.waiting
        if token is _CALL_NEXT:
            # The app ended without starting a response: call_next raises what it raised, or says why not.
            if failure is None and self.request._is_disconnected:
                token = await _step(self, Response(status_code=CLIENT_CLOSED_REQUEST))
            else:
                error = failure or RuntimeError(
                    "No response returned: the app behind this middleware ended without sending one."
                )
                failure = None  # dispatch has it now
                token = await _step(self, error=error)
        while token is _PULL:  # dispatch reads a body the app will not finish
            token = await _step(self, None)
        if failure is not None:
            raise failure

    # The app's side

    async def app_receive(self) -> Message:
        if self.sent:  # dispatch answered with a response of its own: the app's client is gone
            return disconnect()
        return await self.request.app_receive()

    async def app_send(self, message: Message) -> None:
        if self.mode == FORWARD:
            await self.send(message)
            return
        if self.tasked:
            await self.app_task_send(message)
            return
        kind = message["type"]
        if self.waiting is _CALL_NEXT and kind == "http.response.start":
            self.start = message
            self.response = AppResponse(self, message)
            await self.resume(self.response)
            if self.mode == FORWARD:
                await self.send_start(self.send, self.response)
        elif self.waiting is _PULL and self.start is not None:
            await self.resume(message)
        elif kind == "http.response.debug" and self.start is None:
            self.debug = message
        elif self.start is None:
            # Early hints, server pushes and anything else ahead of the response go straight out.
            await self.send(message)
        else:
            # The client got another response from dispatch; the app's is dropped.
            await anyio.lowlevel.checkpoint()

    async def send_start(self, send: Send, response: Response) -> None:
        assert self.start is not None
        if self.debug is not None:
            await send(self.debug)
        # A copy of the app's message, so extra keys such as "trailers" survive.
        await send({**self.start, "status": response.status_code, "headers": response.raw_headers})

    async def pull_body(self) -> AsyncGenerator[bytes | Message, None]:
        """The body of the app's response, for dispatch to read: each message the app sends."""
        if self.mode != PENDING:
            return
        self.mode = PULL
        assert self.start is not None
        trailers = self.start.get("trailers", False)
        if self.tasked:
            if self.app_done:
                return
            self.pipe_send, self.pipe_recv = anyio.create_memory_object_stream[Message](0)
            self.decided.set()
        while True:
            if not self.tasked:
                message: Message | None = await _wait_for_app(_PULL)
            else:
                assert self.pipe_recv is not None
                try:
                    message = await self.pipe_recv.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    message = None
            if message is None:  # the app ended
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    yield body
            else:
                yield message  # pathsend or trailers
            if is_last(message, trailers):
                return

    def end_after_response(self) -> None:
        """Dispatch's response is out: release an app still waiting to send or receive."""
        if self.mode == PENDING:
            self.mode = DISCARD
        self.sent = True
        if self.tasked:
            self.response_sent.set()
            self.decided.set()
            if self.pipe_recv is not None:
                self.pipe_recv.close()
            for scope in self.receive_scopes:
                scope.cancel()

    # The app in a task of its own, as BaseHTTPMiddleware runs it

    async def call_app_task(self) -> Response:
        self.tasked = True
        self.app_done = self.exc_raised = False
        self.app_exc = None
        self.app_context = None
        self.pipe_send = self.pipe_recv = None
        self.receive_scopes = set()
        self.started = anyio.Event()  # the app sent http.response.start, or ended
        self.decided = anyio.Event()  # `mode` is no longer PENDING
        self.response_sent = anyio.Event()  # dispatch's response reached the client
        self.app_finished = anyio.Event()
        self.app_scope = anyio.CancelScope()
        self.task = _spawn(self.run_app_task)
        await self.started.wait()
        if self.start is None:
            if self.app_exc is not None:
                self.exc_raised = True
                raise self.app_exc
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

    async def run_app_task(self) -> None:
        try:
            with self.app_scope:
                await self.app(self.scope, self.app_task_receive, self.app_send)
        except Exception as exc:
            self.app_exc = exc
        finally:
            self.app_done = True
            if self.pipe_send is not None:
                self.pipe_send.close()
            self.started.set()
            self.app_finished.set()

    async def join_app_task(self) -> None:
        if not self.sent and self.mode != FORWARD:
            self.end_after_response()  # dispatch failed: nobody will read what the app sends
        try:
            await self.app_finished.wait()
        except BaseException:
            self.app_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self.app_finished.wait()
            raise

    async def app_task_receive(self) -> Message:
        if self.response_sent.is_set():
            return disconnect()
        # Dispatch may answer with a response of its own while the app waits here for the client;
        # then the app is told the client is gone (`end_after_response` cancels this scope).
        with anyio.CancelScope() as scope:
            self.receive_scopes.add(scope)
            try:
                return await self.request.app_receive()
            finally:
                self.receive_scopes.discard(scope)
        return disconnect()

    async def app_task_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.app_context = contextvars.copy_context()
            self.started.set()
            await self.decided.wait()
            if self.mode == FORWARD:
                assert self.response is not None
                await self.send_start(self.send, self.response)
        elif kind == "http.response.debug" and self.start is None:
            self.debug = message
        elif self.start is None:
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
                await self.response_sent.wait()
        else:
            await self.dropped()

    async def dropped(self) -> None:
        """The client gets another response than the app's: wait until it is sent, then drop the message."""
        await self.response_sent.wait()
        await anyio.lowlevel.checkpoint()


def _spawn(function: Callable[[], Coroutine[Any, Any, None]]) -> object:
    """Start `function` in a task of its own; the Exchange joins it before the request ends.

    Not in a task group: `call_next` may run in a task that ends before the app does.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop().create_task(function())
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(function, context=contextvars.copy_context())
        return None
    raise RuntimeError(f"HTTPMiddleware does not know how to start a task on {library!r}; use asyncio or trio.")
