"""Traps for any `call_next` that runs dispatch and the app in one task, with BaseHTTPMiddleware as
the reference: each test runs both classes side by side and expects the same outcome.

They were written against an engine that drove dispatch by hand and ran the app inline in the
request's task (fast: about a tenth of BaseHTTPMiddleware's cost), and each "Trap" below made it
fail; the engine now in place (the app in a task of its own) passes them all. Any future attempt
at a faster engine must pass them too.

  A. After call_next, dispatch resumed inside the app's `send`, so in whatever task and context
     sent `http.response.start`. Under ASGI 2.3 (uvicorn's) Starlette's StreamingResponse sends
     from a child task; so does an inner middleware's app task. Task-bound things dispatch holds
     across call_next then break: contextvar tokens, CapacityLimiter/Lock ownership, and the child
     task's cancellation on client disconnect cancels dispatch itself.
  B. The app's body could only be pulled from dispatch's own coroutine stack, not from another
     task (a StreamingResponse under ASGI 2.3, a task group, wait_for).
  C. A cancel scope dispatch holds around reading the body was left on the app's stack.
  D. A task fallback must not drop BaseExceptions from the app's task (trio turns that into a crash).
  E. An app waiting in receive() must be woken when dispatch answers with its own response.
  F. Exchange <-> response reference cycles keep every request alive until the cycle collector runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel
import httpx
import pytest
from peer import DEADLOCK, MIDDLEWARES, Middlewares, Peer, alive_after, http_scope
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw import CallNext, HTTPMiddleware

LiveServer = Callable[[ASGIApp], str]


class Chunks:
    """A response body that is not an async generator, so nothing warns when a cancelled stream drops it."""

    def __init__(self, *chunks: bytes, gate: anyio.Event | None = None) -> None:
        self.chunks = chunks
        self.sent = 0
        self.gate = gate  # waited for before every chunk after the first

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self.sent == len(self.chunks):
            raise StopAsyncIteration
        if self.gate is not None and self.sent:
            await self.gate.wait()
        self.sent += 1
        return self.chunks[self.sent - 1]


async def stream_app(scope: Scope, receive: Receive, send: Send) -> None:
    await StreamingResponse(Chunks(b"one,", b"two"))(scope, receive, send)


# Trap B: RuntimeError 'Task got bad yield' / trio TypeError.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_dispatch_wraps_body_in_streaming_response_asgi_23(middleware: Middlewares) -> None:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        return StreamingResponse(response.body_iterator)  # type: ignore[attr-defined]

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(stream_app, dispatch)(http_scope(spec_version="2.3"), peer.receive, peer.send)
    assert peer.body_sent == b"one,two"


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def set_and_reset_var(request: Request, call_next: CallNext) -> Response:
    """The request-id middleware pattern: a contextvar token set before call_next, reset after."""
    token = var.set("x")
    try:
        return await call_next(request)
    finally:
        var.reset(token)


# Trap A: ValueError, token created in a different Context.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_contextvar_reset_after_call_next_asgi_23(middleware: Middlewares) -> None:
    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(stream_app, set_and_reset_var)(http_scope(spec_version="2.3"), peer.receive, peer.send)
    assert peer.body_sent == b"one,two"


# Trap A: the limiter is released from the StreamingResponse's child task.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_capacity_limiter_around_call_next_asgi_23(middleware: Middlewares) -> None:
    limiter = anyio.CapacityLimiter(1)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        async with limiter:
            return await call_next(request)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(stream_app, dispatch)(http_scope(spec_version="2.3"), peer.receive, peer.send)
    assert peer.body_sent == b"one,two"


# a scope around body reading that does not fire.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_cancel_scope_around_body_read(middleware: Middlewares, spec_version: str) -> None:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        body = b""
        with anyio.fail_after(DEADLOCK):
            async for chunk in response.body_iterator:  # type: ignore[attr-defined]
                body += chunk
        return Response(body.upper())

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(stream_app, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.body_sent == b"ONE,TWO"


# Trap C: a bare Cancelled escapes the middleware; trio reports a corrupted
# cancel scope stack; under 2.3 anyio refuses to exit the scope in another task.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_timeout_fires_while_dispatch_reads_body(middleware: Middlewares, spec_version: str) -> None:
    gate = anyio.Event()
    ended: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await StreamingResponse(Chunks(b"one,", b"two", gate=gate))(scope, receive, send)
        finally:
            ended.append("app")

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        body = b""
        with anyio.move_on_after(0.01) as scope:
            async for chunk in response.body_iterator:  # type: ignore[attr-defined]
                body += chunk
        if scope.cancelled_caught:
            gate.set()
            return Response(b"timed out after " + body, status_code=504)
        return Response(body)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(app, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 504
    assert peer.body_sent == b"timed out after one,"
    assert ended == ["app"]


# Trap A (under ASGI 2.3): dispatch is cancelled with the app's child task; its
# code after the await and its background task never run.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_dispatch_after_call_next_survives_client_leaving(middleware: Middlewares, spec_version: str) -> None:
    waiting = anyio.Event()
    proceed = anyio.Event()
    log: list[str] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        waiting.set()
        try:
            await proceed.wait()  # e.g. writing an access log to a database
        except BaseException as exc:
            log.append(type(exc).__name__)
            raise
        log.append("after")
        response.background = BackgroundTask(log.append, "background")
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                middleware(stream_app, dispatch), http_scope(spec_version=spec_version), peer.receive, peer.send
            )
            await waiting.wait()
            peer.leave()
            await anyio.wait_all_tasks_blocked()
            proceed.set()
    assert log == ["after", "background"]


class DispatchFailure(Exception):
    pass


def timeout_layer(app: ASGIApp) -> HTTPMiddleware:
    """A middleware holding a deadline across call_next: its app runs in a task of its own."""

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        with anyio.fail_after(DEADLOCK):
            return await call_next(request)

    return HTTPMiddleware(app, dispatch)


# See also test_outer_dispatch_failure_is_not_lost_in_inner_app_task.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_outer_dispatch_fails_over_inner_app_task(middleware: Middlewares, spec_version: str) -> None:
    async def failing(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        raise DispatchFailure("outer")

    peer = Peer()
    app = middleware(timeout_layer(stream_app), failing)
    with anyio.fail_after(DEADLOCK), pytest.raises(DispatchFailure, match="outer"):
        await app(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.sent == []


# An outer middleware reading the body of an inner one's app task.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_outer_dispatch_reads_body_over_inner_app_task(middleware: Middlewares, spec_version: str) -> None:
    async def upper(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        return Response(body.upper())

    peer = Peer()
    app = middleware(timeout_layer(stream_app), upper)
    with anyio.fail_after(DEADLOCK):
        await app(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.body_sent == b"ONE,TWO"


# Trap E: an endless stream whose server never reports a disconnect must still be released.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_dispatch_replaces_endless_stream_server_never_disconnects(middleware: Middlewares) -> None:
    """ASGI 2.3: the app's StreamingResponse waits in receive() for a disconnect the server never sends."""

    class Endless:
        def __aiter__(self) -> Endless:
            return self

        async def __anext__(self) -> bytes:
            await anyio.lowlevel.checkpoint()
            return b"event\\n"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(Endless())(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return Response(b"replaced", status_code=403)

    request: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if request:
            return request.pop()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(app, dispatch)(http_scope(spec_version="2.3"), receive, peer.send)
    assert peer.body_sent == b"replaced"


# asyncio.timeout around call_next, expiring or not.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_asyncio_timeout_around_call_next(middleware: Middlewares, spec_version: str) -> None:
    gate = anyio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()
        await stream_app(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        try:
            async with asyncio.timeout(0):
                return await call_next(request)
        except TimeoutError:
            gate.set()
            return Response(b"timed out", status_code=504)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(slow_app, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 504


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_asyncio_timeout_around_call_next_not_reached(middleware: Middlewares, spec_version: str) -> None:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        async with asyncio.timeout(DEADLOCK):
            response = await call_next(request)
        response.headers["x-dispatch"] = "yes"
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(stream_app, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.body_sent == b"one,two"


# Under a real uvicorn, whose HTTP scopes say ASGI 2.3: Starlette's StreamingResponse then sends
# from a child task and cancels it when the client leaves.


class Gate:
    """An event in the server's loop, opened by a request to `/release`."""

    def __init__(self) -> None:
        self.events: list[anyio.Event] = []

    def event(self) -> anyio.Event:
        if not self.events:
            self.events.append(anyio.Event())
        return self.events[0]

    async def release(self, request: Request) -> Response:
        self.event().set()
        return Response()


# Trap B, under a real server: 500 and a truncated chunked body.
@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_uvicorn_dispatch_streams_body_through_its_own_streaming_response(
    mw_live_server: LiveServer, middleware: Middlewares
) -> None:
    async def upper(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk.upper()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        return StreamingResponse(upper(response.body_iterator))  # type: ignore[attr-defined]

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(Chunks(b"one,", b"two"))

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(middleware, dispatch=dispatch)])
    url = mw_live_server(app)
    assert httpx.get(url, timeout=DEADLOCK).content == b"ONE,TWO"


# Trap A, under a real server: dispatch's background task never runs.
@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_uvicorn_dispatch_finishes_after_client_left(mw_live_server: LiveServer, middleware: Middlewares) -> None:
    gate = Gate()
    waiting = threading.Event()
    ran = threading.Event()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if request.url.path == "/":
            waiting.set()
            await gate.event().wait()  # e.g. an access log written to a database
            response.background = BackgroundTask(ran.set)
        return response

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(Chunks(b"one,", b"two"))

    app = Starlette(
        routes=[Route("/", endpoint), Route("/release", gate.release)],
        middleware=[Middleware(middleware, dispatch=dispatch)],
    )
    url = mw_live_server(app)
    with socket.create_connection(("127.0.0.1", int(url.rpartition(":")[2]))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert waiting.wait(DEADLOCK)
    time.sleep(0.2)  # let uvicorn see the connection close
    assert httpx.get(f"{url}/release", timeout=DEADLOCK).status_code == 200
    assert ran.wait(DEADLOCK)


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_uvicorn_dispatch_reads_body_client_leaves_background_runs(
    mw_live_server: LiveServer, middleware: Middlewares
) -> None:
    gate = Gate()
    ran = threading.Event()
    first = threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.sent = 0

        def __aiter__(self) -> Slow:
            return self

        async def __anext__(self) -> bytes:
            self.sent += 1
            if self.sent == 1:
                return b"one,"
            first.set()
            await gate.event().wait()
            raise StopAsyncIteration

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if request.url.path != "/":
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        return Response(body.upper(), background=BackgroundTask(ran.set))

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(Slow())

    app = Starlette(
        routes=[Route("/", endpoint), Route("/release", gate.release)],
        middleware=[Middleware(middleware, dispatch=dispatch)],
    )
    url = mw_live_server(app)
    with socket.create_connection(("127.0.0.1", int(url.rpartition(":")[2]))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert first.wait(DEADLOCK)
    time.sleep(0.2)  # let uvicorn see the connection close
    assert httpx.get(f"{url}/release", timeout=DEADLOCK).status_code == 200
    assert ran.wait(DEADLOCK)


# Trap A, even under ASGI 2.4.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_contextvar_reset_after_call_next_over_inner_app_task(middleware: Middlewares) -> None:
    """ASGI 2.4, but the inner middleware's app task sends the response start."""

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(timeout_layer(stream_app), set_and_reset_var)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == b"one,two"


# Trap D: asyncio logs 'Task exception was never retrieved'; trio crashes
# with TrioInternalError.
@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_outer_dispatch_failure_is_not_lost_in_inner_app_task(anyio_backend: str, middleware: Middlewares) -> None:
    """The outer dispatch's failure unwinds the inner middleware's app task, which must not drop it."""
    loop_errors: list[str] = []

    async def failing(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        raise DispatchFailure("outer")

    async def main() -> None:
        if anyio_backend == "asyncio":
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, context: loop_errors.append(context["message"])
            )
        peer = Peer()
        with anyio.fail_after(DEADLOCK), pytest.raises(DispatchFailure, match="outer"):
            await middleware(timeout_layer(stream_app), failing)(http_scope(), peer.receive, peer.send)
        await anyio.wait_all_tasks_blocked()
        gc.collect()  # asyncio reports a task's unretrieved exception when the task is collected

    try:
        anyio.run(main, backend=anyio_backend)
    except BaseException as exc:  # trio: TrioInternalError, since a system task raised
        # (pytest cannot even format that traceback: it fails with an internal error)
        pytest.fail(f"the event loop crashed: {exc!r}", pytrace=False)
    assert loop_errors == []


# Trap F.
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("around_call_next", ["inline", "deadline"])
def test_request_freed_without_cycle_collector(
    anyio_backend: str, middleware: Middlewares, around_call_next: str
) -> None:
    refs: list[weakref.ref[object]] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        refs.append(weakref.ref(request))
        if around_call_next == "deadline":
            with anyio.fail_after(DEADLOCK):
                response = await call_next(request)
        else:
            response = await call_next(request)
        refs.append(weakref.ref(response))
        return response

    async def main() -> None:
        peer = Peer()
        await middleware(stream_app, dispatch)(http_scope(), peer.receive, peer.send)

    assert alive_after(main, anyio_backend, refs) == [False, False]
