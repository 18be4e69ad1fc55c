"""Behaviour of `HTTPMiddleware`: its `call_next` keeps every promise `BaseHTTPMiddleware` makes.

Where a test is parametrized over `MIDDLEWARES`, both classes must behave alike; where it is
parametrized with an expected outcome per class, the difference is an improvement of ours.
"""

from __future__ import annotations

import contextvars
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, cast

import anyio
import httpx
import pytest
from peer import DEADLOCK, MIDDLEWARES, Middlewares, Peer, http_scope, passthrough
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, Router, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from starlette_mw import CallNext, HTTPMiddleware

Backend = Literal["asyncio", "trio"]
LiveServer = Callable[[ASGIApp], str]


class Gate:
    """An event an app under `mw_live_server` waits on, opened by a request to `open`.

    The event is created on first use, so in the server's event loop.
    """

    def __init__(self) -> None:
        self._events: list[anyio.Event] = []

    async def wait(self) -> None:
        await self._event().wait()

    async def open(self, request: Request) -> Response:
        self._event().set()
        return Response()

    def _event(self) -> anyio.Event:
        if not self._events:
            self._events.append(anyio.Event())
        return self._events[0]


async def read_body(response: Response) -> bytes:
    """Drain the body of a response that call_next returned, as a dispatch function may."""
    body = b""
    async for chunk in cast(StreamingResponse, response).body_iterator:
        assert isinstance(chunk, bytes)
        body += chunk
    return body


async def read_request(request: Request, how: str) -> list[bytes]:
    if how == "body":
        return [await request.body()]
    return [chunk async for chunk in request.stream()]


def app_of(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """`endpoint` on `/`, behind a bare router: unlike a `Starlette` app, it lets exceptions out as they are."""
    return Router(routes=[Route("/", endpoint, methods=["GET", "POST"])])


# 1. Streaming


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_first_chunk_reaches_client_before_stream_ends(middleware: Middlewares, through_dispatch: bool) -> None:
    peer = Peer()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        await peer.first_body.wait()  # the stream goes on only once the client has chunk one
        yield b"two"

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(chunks())(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if through_dispatch:
            response = StreamingResponse(cast(StreamingResponse, response).body_iterator)
        response.headers["x-dispatched"] = "yes"
        return response

    with anyio.fail_after(DEADLOCK):
        await middleware(endpoint, dispatch)(http_scope(), peer.receive, peer.send)
    assert (b"x-dispatched", b"yes") in peer.sent[0]["headers"]
    assert peer.body_sent == b"onetwo"


def test_streaming_through_uvicorn(mw_live_server: LiveServer) -> None:
    gate = Gate()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        await gate.wait()
        yield b"two"

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks())

    app = Starlette(
        routes=[Route("/stream", stream), Route("/release", gate.open)],
        middleware=[Middleware(HTTPMiddleware, dispatch=passthrough)],
    )
    url = mw_live_server(app)
    with httpx.Client(base_url=url) as client, client.stream("GET", "/stream") as response:
        chunks_in = response.iter_raw()
        assert next(chunks_in) == b"one"
        assert httpx.get(f"{url}/release").status_code == 200
        assert b"".join(chunks_in) == b"two"


# 2. Background tasks


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_background_task_runs_after_response_is_complete(middleware: Middlewares, through_dispatch: bool) -> None:
    peer = Peer()

    async def background() -> None:
        peer.sent.append({"type": "test.background", "response_complete": peer.complete.is_set()})

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(background))

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if through_dispatch:
            return Response(await read_body(response), headers=response.headers)
        return response

    await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == b"hello"
    assert peer.sent[-1] == {"type": "test.background", "response_complete": True}


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_background_task_does_not_hold_back_the_response(middleware: Middlewares) -> None:
    peer = Peer()

    async def background() -> None:
        await peer.complete.wait()  # deadlocks if the response waits for this task

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(background))

    with anyio.fail_after(DEADLOCK):
        await middleware(app_of(endpoint), passthrough)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == b"hello"


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("added_by", ["endpoint", "dispatch"])
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_background_task_survives_client_disconnect(
    middleware: Middlewares, added_by: str, spec_version: str
) -> None:
    """Under ASGI < 2.4 (uvicorn's HTTP says 2.3) a StreamingResponse cancels its sending task on disconnect."""
    peer = Peer()
    proceed = anyio.Event()
    finished: list[str] = []

    async def background() -> None:
        await proceed.wait()
        finished.append("background")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"hello"

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks(), background=BackgroundTask(background) if added_by == "endpoint" else None)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if added_by == "dispatch":
            response.background = BackgroundTask(background)
        return response

    async with anyio.create_task_group() as tg:
        scope = http_scope(spec_version=spec_version)
        tg.start_soon(middleware(app_of(endpoint), dispatch), scope, peer.receive, peer.send)
        await peer.complete.wait()  # and so the client has gone
        # Give anything that would cancel the task on disconnect every chance to do so.
        await anyio.wait_all_tasks_blocked()
        proceed.set()
    assert finished == ["background"]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_background_task_added_by_dispatch_runs(middleware: Middlewares, through_dispatch: bool) -> None:
    peer = Peer()

    async def note(who: str) -> None:  # async, so it runs at once: a sync one waits for a thread
        peer.sent.append({"type": f"test.background.{who}", "response_complete": peer.complete.is_set()})

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(note, "endpoint"))

    async def upper(chunks: AsyncIterable[object]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            assert isinstance(chunk, bytes)
            yield chunk.upper()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = cast(StreamingResponse, await call_next(request))
        if through_dispatch:
            response.body_iterator = upper(response.body_iterator)
        response.background = BackgroundTask(note, "dispatch")
        return response

    await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == (b"HELLO" if through_dispatch else b"hello")
    backgrounds = sorted((m["type"], m["response_complete"]) for m in peer.sent if m["type"].startswith("test."))
    assert backgrounds == [("test.background.dispatch", True), ("test.background.endpoint", True)]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_background_tasks_of_dispatch_and_endpoint_run_one_after_the_other(
    middleware: Middlewares, through_dispatch: bool
) -> None:
    # Two background tasks that share something (a database session) must not overlap.
    log: list[str] = []

    async def job(who: str) -> None:
        log.append(f"{who} starts")
        await anyio.sleep(0.01)
        log.append(f"{who} ends")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(job, "endpoint"))

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = cast(StreamingResponse, await call_next(request))
        if through_dispatch:
            response.body_iterator = cast(AsyncIterator[bytes], iterate([c async for c in response.body_iterator]))
        response.background = BackgroundTask(job, "dispatch")
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == b"hello"
    assert log == ["dispatch starts", "dispatch ends", "endpoint starts", "endpoint ends"]  # Starlette's order


class BackgroundFailure(Exception):
    pass


@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("added_by", ["endpoint", "dispatch"])
def test_background_task_exception_propagates(anyio_backend: Backend, middleware: Middlewares, added_by: str) -> None:
    async def fail() -> None:
        raise BackgroundFailure(added_by)

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(fail) if added_by == "endpoint" else None)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if added_by == "dispatch":
            response.background = BackgroundTask(fail)
        return response

    client = TestClient(middleware(app_of(endpoint), dispatch), backend=anyio_backend)
    with pytest.raises(BackgroundFailure, match=added_by):
        client.get("/")


@pytest.mark.parametrize("added_by", ["endpoint", "dispatch"])
def test_background_task_runs_after_client_left_uvicorn(mw_live_server: LiveServer, added_by: str) -> None:
    ran = threading.Event()
    gate = Gate()

    async def background() -> None:
        await gate.wait()
        ran.set()

    async def hello(request: Request) -> Response:
        background_task = BackgroundTask(background) if added_by == "endpoint" else None
        return StreamingResponse(iter([b"hello"]), background=background_task)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        if added_by == "dispatch" and request.url.path == "/":
            response.background = BackgroundTask(background)
        return response

    app = Starlette(
        routes=[Route("/", hello), Route("/release", gate.open)],
        middleware=[Middleware(HTTPMiddleware, dispatch=dispatch)],
    )
    url = mw_live_server(app)
    with httpx.Client() as client:
        assert client.get(url).text == "hello"
    # The first client has hung up; only now may the background task go on.
    assert httpx.get(f"{url}/release").status_code == 200
    assert ran.wait(DEADLOCK)


# 3. The request body, read by dispatch and by the app

# What dispatch reads before call_next -> what the app then reads, by body() or by stream().
APP_SEES = {
    ("nothing", "body"): [b"abc"],
    ("nothing", "stream"): [b"ab", b"c", b""],
    ("body", "body"): [b"abc"],
    ("body", "stream"): [b"abc", b""],
    ("stream", "body"): [b""],
    ("stream", "stream"): [b""],
}


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize(("dispatch_reads", "app_reads"), list(APP_SEES))
async def test_request_body_read_by_dispatch_then_app(
    middleware: Middlewares, dispatch_reads: str, app_reads: str
) -> None:
    peer = Peer(b"ab", b"c")
    seen: dict[str, list[bytes]] = {}

    async def endpoint(request: Request) -> Response:
        seen["app"] = await read_request(request, app_reads)
        return Response()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        if dispatch_reads != "nothing":
            seen["dispatch"] = await read_request(request, dispatch_reads)
        return await call_next(request)

    await middleware(app_of(endpoint), dispatch)(http_scope(method="POST"), peer.receive, peer.send)
    assert seen.pop("app") == APP_SEES[dispatch_reads, app_reads]
    assert seen == {} if dispatch_reads == "nothing" else {"dispatch": APP_SEES["nothing", dispatch_reads]}


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("app_reads", ["body", "stream"])
@pytest.mark.parametrize("dispatch_reads", ["body", "stream"])
async def test_request_body_consumed_by_app_is_gone_for_dispatch(
    middleware: Middlewares, app_reads: str, dispatch_reads: str
) -> None:
    peer = Peer(b"ab", b"c")
    seen: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        seen.extend(await read_request(request, app_reads))
        return Response()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        with pytest.raises(RuntimeError, match="Stream consumed"):
            await read_request(request, dispatch_reads)
        return response

    await middleware(app_of(endpoint), dispatch)(http_scope(method="POST"), peer.receive, peer.send)
    assert b"".join(seen) == b"abc"
    assert peer.types == ["http.response.start", "http.response.body"]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("app_reads", ["nothing", "body", "stream"])
async def test_request_body_buffered_by_dispatch_can_be_read_again(middleware: Middlewares, app_reads: str) -> None:
    peer = Peer(b"ab", b"c")
    seen: list[list[bytes]] = []

    async def endpoint(request: Request) -> Response:
        if app_reads != "nothing":
            await read_request(request, app_reads)
        return Response()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        seen.append([await request.body()])
        response = await call_next(request)
        seen.append([await request.body()])
        seen.append(await read_request(request, "stream"))
        return response

    await middleware(app_of(endpoint), dispatch)(http_scope(method="POST"), peer.receive, peer.send)
    assert seen == [[b"abc"], [b"abc"], [b"abc", b""]]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_request_body_left_by_app_can_be_read_by_dispatch_afterwards(middleware: Middlewares) -> None:
    peer = Peer(b"ab", b"c")
    seen: list[bytes] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        seen.append(await request.body())
        return response

    await middleware(PlainTextResponse("ignores the body"), dispatch)(
        http_scope(method="POST"), peer.receive, peer.send
    )
    assert seen == [b"abc"]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_request_stream_shared_chunk_by_chunk(middleware: Middlewares) -> None:
    """Dispatch reads chunk one, the app chunk two, and dispatch, resuming its stream, chunk three."""
    peer = Peer(b"1", b"2", b"3")
    seen: list[tuple[str, bytes]] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(("app", message["body"]))
        await Response()(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = None
        async for chunk in request.stream():
            seen.append(("dispatch", chunk))
            if response is None:
                response = await call_next(request)
        assert response is not None
        return response

    await middleware(endpoint, dispatch)(http_scope(method="POST"), peer.receive, peer.send)
    assert seen == [("dispatch", b"1"), ("app", b"2"), ("dispatch", b"3"), ("dispatch", b"")]


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_app_sees_request_body_as_changed_by_inner_middleware(anyio_backend: Backend, middleware: Middlewares) -> None:
    def shouting(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            async def receive_upper() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    message["body"] = message["body"].upper()
                return message

            await app(scope, receive_upper, send)

        return wrapped

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    seen: list[bytes] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        seen.append(await request.body())
        return await call_next(request)

    client = TestClient(middleware(shouting(app_of(echo)), dispatch), backend=anyio_backend)
    assert client.post("/", content=b"quiet").content == b"QUIET"
    assert seen == [b"quiet"]


# 4. Client disconnects


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("app_reads_body", [False, True], ids=["no-body-read", "body-read"])
async def test_app_receives_client_disconnect(middleware: Middlewares, app_reads_body: bool) -> None:
    peer = Peer(b"hi", leaves=True)
    received: list[Message] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if not app_reads_body:
            peer.leave()  # gone before the app looks at the body
        while not received or received[-1]["type"] != "http.disconnect":
            received.append(await receive())
        await Response()(scope, receive, send)

    disconnected: list[bool] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        disconnected.append(await request.is_disconnected())
        return response

    await middleware(endpoint, dispatch)(http_scope(method="POST"), peer.receive, peer.send)
    expected_body = [{"type": "http.request", "body": b"hi", "more_body": False}] if app_reads_body else []
    assert received == [*expected_body, {"type": "http.disconnect"}]
    assert disconnected == [True]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("middleware", "endpoint_sees_disconnect"),
    [
        pytest.param(BaseHTTPMiddleware, False, id="starlette"),
        pytest.param(HTTPMiddleware, True, id="starlette_mw"),
    ],
)
async def test_endpoint_is_disconnected(middleware: Middlewares, endpoint_sees_disconnect: bool) -> None:
    peer = Peer(b"order", leaves=True)
    answers: list[bool] = []

    async def endpoint(request: Request) -> Response:
        await request.body()
        answers.append(await request.is_disconnected())
        return Response()

    await middleware(app_of(endpoint), passthrough)(http_scope(method="POST"), peer.receive, peer.send)
    assert answers == [endpoint_sees_disconnect]


def test_endpoint_notices_client_leaving_uvicorn(mw_live_server: LiveServer) -> None:
    polling = threading.Event()
    noticed = threading.Event()

    async def wait_for_client_to_leave(request: Request) -> Response:
        polling.set()
        for _ in range(DEADLOCK * 100):
            if await request.is_disconnected():
                noticed.set()
                break
            await anyio.sleep(0.01)
        return Response()

    url = mw_live_server(HTTPMiddleware(app_of(wait_for_client_to_leave), passthrough))
    with socket.create_connection(("127.0.0.1", int(url.rpartition(":")[2]))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert polling.wait(DEADLOCK)
    assert noticed.wait(DEADLOCK)


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("with_body", [False, True], ids=["no-body", "body"])
async def test_app_polls_for_disconnect_twice_on_a_single_server_message(
    middleware: Middlewares, with_body: bool
) -> None:
    script: list[Message] = [{"type": "http.request", "body": b"hello", "more_body": False}] if with_body else []
    script.append({"type": "http.disconnect"})

    async def receive() -> Message:
        assert script, "the server reports the disconnect once; a second receive() would wait forever"
        return script.pop(0)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(2):
            while (await receive())["type"] != "http.disconnect":
                pass
        await PlainTextResponse("bye")(scope, receive, send)

    peer = Peer()
    await middleware(endpoint, passthrough)(http_scope(method="POST"), receive, peer.send)
    assert peer.body_sent == b"bye"


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_stacked_middlewares_with_client_gone(middleware: Middlewares) -> None:
    peer = Peer()
    peer.leave()
    log: list[str] = []

    def layer(name: str) -> Middleware:
        async def dispatch(request: Request, call_next: CallNext) -> Response:
            log.append(f"{name} in")
            response = await call_next(request)
            log.append(f"{name} out")
            response.background = BackgroundTask(log.append, f"{name} background")
            return response

        return Middleware(middleware, dispatch=dispatch)

    async def endpoint(request: Request) -> Response:
        with pytest.raises(ClientDisconnect):
            await request.body()
        return Response(b"late")

    app = Starlette(routes=[Route("/", endpoint)], middleware=[layer("a"), layer("b"), layer("c")])
    await app(http_scope(), peer.receive, peer.send)
    assert log[:6] == ["a in", "b in", "c in", "c out", "b out", "a out"]
    assert sorted(log[6:]) == ["a background", "b background", "c background"]
    assert peer.body_sent == b"late"


# 5. Exceptions


class EndpointFailure(Exception):
    pass


def failing_endpoint(how: str) -> ASGIApp:
    async def endpoint(request: Request) -> Response:
        if how == "plain":
            raise EndpointFailure("outer")
        try:
            raise KeyError("inner")
        except KeyError as inner:
            if how == "cause":
                raise EndpointFailure("outer") from inner
            raise EndpointFailure("outer")  # noqa: B904 - the implicit __context__ is the point

    return app_of(endpoint)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["plain", "context", "cause"])
async def test_endpoint_exception_keeps_context_and_cause(how: str) -> None:
    caught: list[BaseException] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        try:
            return await call_next(request)
        except EndpointFailure as exc:
            caught.append(exc)
            raise

    peer = Peer()
    with pytest.raises(EndpointFailure, match="outer") as info:
        await HTTPMiddleware(failing_endpoint(how), dispatch)(http_scope(), peer.receive, peer.send)
    exc = info.value
    assert caught == [exc]
    if how == "plain":
        assert (exc.__context__, exc.__cause__) == (None, None)
    else:
        assert repr(exc.__context__) == "KeyError('inner')"
        assert exc.__cause__ is (exc.__context__ if how == "cause" else None)
    assert peer.sent == []


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_endpoint_exception_propagates(anyio_backend: Backend, middleware: Middlewares) -> None:
    client = TestClient(middleware(failing_endpoint("plain"), passthrough), backend=anyio_backend)
    with pytest.raises(EndpointFailure, match="outer"):
        client.get("/")


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_dispatch_turns_endpoint_exception_into_response(anyio_backend: Backend, middleware: Middlewares) -> None:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        try:
            return await call_next(request)
        except EndpointFailure as exc:
            return PlainTextResponse(f"handled {exc}", status_code=502)

    client = TestClient(middleware(failing_endpoint("context"), dispatch), backend=anyio_backend)
    response = client.get("/")
    assert (response.status_code, response.text) == (502, "handled outer")


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_endpoint_exception_group_propagates(anyio_backend: Backend, middleware: Middlewares) -> None:
    async def endpoint(request: Request) -> Response:
        raise ExceptionGroup("two failures", [ValueError("one"), EndpointFailure("two")])

    client = TestClient(middleware(app_of(endpoint), passthrough), backend=anyio_backend)
    with pytest.raises(ExceptionGroup, match="two failures") as info:
        client.get("/")
    assert [repr(exc) for exc in info.value.exceptions] == ["ValueError('one')", "EndpointFailure('two')"]


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_exception_in_streamed_body_propagates(middleware: Middlewares) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise EndpointFailure("mid-stream")

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    backgrounds: list[str] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.background = BackgroundTask(backgrounds.append, "ran")
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK), pytest.raises(EndpointFailure, match="mid-stream"):
        await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert peer.body_sent == b"partial"
    assert backgrounds == ["ran"]  # dispatch's background task runs even so, as Starlette's does


class DispatchFailure(Exception):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("when", ["before", "after"])
async def test_dispatch_exception_propagates(middleware: Middlewares, when: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        await anyio.sleep_forever()  # cancelled, as the app must be once dispatch has failed
        yield b""  # pragma: no cover

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        if when == "after":
            await call_next(request)
        raise DispatchFailure(when)

    peer = Peer()
    with anyio.fail_after(DEADLOCK), pytest.raises(DispatchFailure, match=when):
        await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert peer.sent == []


# 6. Messages other than the response itself


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_pathsend_passes_through(middleware: Middlewares, through_dispatch: bool, tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello")

    async def endpoint(request: Request) -> Response:
        return FileResponse(path)

    async def same(chunks: AsyncIterable[object]) -> AsyncIterator[object]:
        async for chunk in chunks:
            yield chunk

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = cast(StreamingResponse, await call_next(request))
        if through_dispatch:
            response.body_iterator = cast(AsyncIterator[bytes], same(response.body_iterator))
        return response

    peer = Peer()
    scope = http_scope(extensions=("http.response.pathsend",))
    await middleware(app_of(endpoint), dispatch)(scope, peer.receive, peer.send)
    assert peer.types == ["http.response.start", "http.response.pathsend"]
    assert peer.sent[1] == {"type": "http.response.pathsend", "path": str(path)}


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_early_hints_from_dispatch_and_endpoint_in_order(middleware: Middlewares) -> None:
    async def endpoint(request: Request) -> Response:
        await request.send_early_hints("</app.css>; rel=preload; as=style")
        return PlainTextResponse("hello")

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        await request.send_early_hints("</mw.js>; rel=preload; as=script")
        return await call_next(request)

    peer = Peer()
    scope = http_scope(extensions=("http.response.early_hint",))
    with anyio.fail_after(DEADLOCK):
        await middleware(app_of(endpoint), dispatch)(scope, peer.receive, peer.send)
    assert peer.sent[:2] == [
        {"type": "http.response.early_hint", "links": [b"</mw.js>; rel=preload; as=script"]},
        {"type": "http.response.early_hint", "links": [b"</app.css>; rel=preload; as=style"]},
    ]
    assert peer.types[2] == "http.response.start"
    assert peer.body_sent == b"hello"


@pytest.mark.anyio
async def test_server_push_passes_through() -> None:
    """A push promise ahead of the response goes to the server (BaseHTTPMiddleware fails an assert)."""

    async def endpoint(request: Request) -> Response:
        await request.send_push_promise("/app.css")
        return PlainTextResponse("hello")

    peer = Peer()
    scope = http_scope(extensions=("http.response.push",))
    with anyio.fail_after(DEADLOCK):
        await HTTPMiddleware(app_of(endpoint), passthrough)(scope, peer.receive, peer.send)
    assert peer.sent[0] == {"type": "http.response.push", "path": "/app.css", "headers": []}
    assert peer.types[1:] == ["http.response.start", "http.response.body"]


@pytest.mark.anyio
@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
async def test_a_push_promise_mid_body_leaves_the_body_to_end(through_dispatch: bool) -> None:
    async def endpoint(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            await request.send_push_promise("/app.css")
            yield b"b"

        return StreamingResponse(chunks())

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = cast(StreamingResponse, await call_next(request))
        if through_dispatch:  # the usual "log the body" dispatch: read it all, send it again
            chunks = [chunk async for chunk in response.body_iterator]
            response.body_iterator = cast(AsyncIterator[bytes], iterate(chunks))
        return response

    peer = Peer()
    scope = http_scope(extensions=("http.response.push",))
    with anyio.fail_after(DEADLOCK):
        await HTTPMiddleware(app_of(endpoint), dispatch)(scope, peer.receive, peer.send)
    assert "http.response.push" in peer.types
    assert peer.body_sent == b"ab"
    assert peer.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def iterate(items: Iterable[object]) -> AsyncIterator[object]:
    for item in items:
        yield item


DEBUG_INFO = {"template": "page.html", "context": {"title": "Home"}}


async def debugging_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends what a template response sends when the server offers the debug extension."""
    await send({"type": "http.response.debug", "info": DEBUG_INFO})
    await PlainTextResponse("page")(scope, receive, send)


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_debug_message_arrives_before_start(middleware: Middlewares) -> None:
    peer = Peer()
    scope = http_scope(extensions=("http.response.debug",))
    await middleware(debugging_endpoint, passthrough)(scope, peer.receive, peer.send)
    assert peer.sent[0] == {"type": "http.response.debug", "info": DEBUG_INFO}
    assert peer.types[1] == "http.response.start"
    assert peer.body_sent == b"page"


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_debug_message_reaches_test_client(anyio_backend: Backend, middleware: Middlewares) -> None:
    client = TestClient(middleware(debugging_endpoint, passthrough), backend=anyio_backend)
    response = client.get("/")
    # TestClient adds these two attributes to the response it returns; no type declares them.
    assert response.template == "page.html"  # type: ignore[attr-defined]
    assert response.context == {"title": "Home"}  # type: ignore[attr-defined]


# 7. Other scope types


@pytest.mark.anyio
@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
async def test_other_scopes_pass_through_untouched(scope_type: str) -> None:
    calls: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append((scope, receive, send))

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        raise AssertionError("dispatch is for HTTP requests only")

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    scope: Scope = {"type": scope_type, "asgi": {"version": "3.0"}}
    await HTTPMiddleware(app, dispatch)(scope, receive, send)
    assert len(calls) == 1
    assert calls[0][0] is scope and calls[0][1] is receive and calls[0][2] is send


def test_websocket_and_lifespan_skip_dispatch(anyio_backend: Backend) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        events.append("dispatch")
        return await call_next(request)

    app = Starlette(
        routes=[WebSocketRoute("/ws", chat)],
        middleware=[Middleware(HTTPMiddleware, dispatch=dispatch)],
        lifespan=lifespan,
    )
    with TestClient(app, backend=anyio_backend) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("echo")
        assert websocket.receive_text() == "echo"
    assert events == ["startup", "shutdown"]


# 8. call_next returns once the response has started


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_call_next_returns_while_app_still_runs(middleware: Middlewares) -> None:
    released = anyio.Event()
    app_done: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        await released.wait()  # set by dispatch, so only after call_next has returned
        yield b"body"

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(body())(scope, receive, send)
        app_done.append(True)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        assert app_done == []
        released.set()
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(endpoint, dispatch)(http_scope(), peer.receive, peer.send)
    assert app_done == [True]
    assert peer.body_sent == b"body"


# 9. Improvements over BaseHTTPMiddleware

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("middleware", "seen_after_call_next"),
    [
        pytest.param(BaseHTTPMiddleware, "set by dispatch", id="starlette"),
        pytest.param(HTTPMiddleware, "set by endpoint", id="starlette_mw"),
    ],
)
async def test_context_variable_set_by_endpoint_visible_in_dispatch(
    middleware: Middlewares, seen_after_call_next: str
) -> None:
    """https://github.com/Kludex/starlette/issues/1081"""
    seen: list[str] = []

    async def endpoint(request: Request) -> Response:
        seen.append(request_id.get())
        request_id.set("set by endpoint")
        return Response()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        request_id.set("set by dispatch")
        response = await call_next(request)
        seen.append(request_id.get())
        return response

    peer = Peer()
    await middleware(app_of(endpoint), dispatch)(http_scope(), peer.receive, peer.send)
    assert seen == ["set by dispatch", seen_after_call_next]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("middleware", "outcome"),
    [
        pytest.param(BaseHTTPMiddleware, "RuntimeError('No response returned.')", id="starlette"),
        pytest.param(HTTPMiddleware, "499", id="starlette_mw"),
    ],
)
async def test_client_gone_before_app_answers(middleware: Middlewares, outcome: str) -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # nobody left to answer

    outcomes: list[str] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        try:
            response = await call_next(request)
        except RuntimeError as exc:
            outcomes.append(repr(exc))
            return Response(status_code=500)
        outcomes.append(str(response.status_code))
        return response

    peer = Peer(leaves=True)
    await middleware(endpoint, dispatch)(http_scope(), peer.receive, peer.send)
    assert outcomes == [outcome]


TRAILING_APP_MESSAGES: list[Message] = [
    {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")],
        "trailers": True,
        "x-server-extra": "kept",
    },
    {"type": "http.response.body", "body": b"data", "more_body": False},
    {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": False},
]


async def trailing_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    for message in TRAILING_APP_MESSAGES:
        await send(dict(message))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("middleware", "client_gets"),
    [
        pytest.param(
            BaseHTTPMiddleware,
            [
                {"type": "http.response.start", "status": 200, "headers": TRAILING_APP_MESSAGES[0]["headers"]},
                {"type": "http.response.body", "body": b"data", "more_body": True},
                {"type": "http.response.body", "body": b"", "more_body": False},
            ],
            id="starlette",
        ),
        pytest.param(HTTPMiddleware, TRAILING_APP_MESSAGES, id="starlette_mw"),
    ],
)
async def test_trailers_and_extra_start_keys_pass_through(middleware: Middlewares, client_gets: list[Message]) -> None:
    peer = Peer()
    scope = http_scope(extensions=("http.response.trailers",))
    with anyio.fail_after(DEADLOCK):
        await middleware(trailing_endpoint, passthrough)(scope, peer.receive, peer.send)
    assert peer.sent == client_gets


@pytest.mark.parametrize("through_dispatch", [False, True], ids=["forwarded", "through-dispatch"])
def test_trailers_reach_test_client(anyio_backend: Backend, through_dispatch: bool) -> None:
    async def upper(chunks: AsyncIterable[object]) -> AsyncIterator[object]:
        async for chunk in chunks:  # the trailers come through as a message, after the last bytes
            yield chunk.upper() if isinstance(chunk, bytes) else chunk

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = cast(StreamingResponse, await call_next(request))
        if through_dispatch:
            response.body_iterator = cast(AsyncIterator[bytes], upper(response.body_iterator))
        return response

    client = TestClient(HTTPMiddleware(trailing_endpoint, dispatch), backend=anyio_backend)
    response = client.get("/")
    assert response.text == ("DATA" if through_dispatch else "data")
    assert response.extensions["http.response.trailers"] == [(b"x-checksum", b"abc")]


CHUNKED_APP_MESSAGES: list[Message] = [
    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]},
    {"type": "http.response.body", "body": b"a", "more_body": True},
    {"type": "http.response.body", "body": b"", "more_body": True},
    {"type": "http.response.body", "body": b"bc", "more_body": False},
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("middleware", "client_gets"),
    [
        pytest.param(
            BaseHTTPMiddleware,
            [
                CHUNKED_APP_MESSAGES[0],
                {"type": "http.response.body", "body": b"a", "more_body": True},
                {"type": "http.response.body", "body": b"bc", "more_body": True},
                {"type": "http.response.body", "body": b"", "more_body": False},
            ],
            id="starlette",
        ),
        pytest.param(HTTPMiddleware, CHUNKED_APP_MESSAGES, id="starlette_mw"),
    ],
)
async def test_body_chunks_pass_through_as_sent(middleware: Middlewares, client_gets: list[Message]) -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        for message in CHUNKED_APP_MESSAGES:
            await send(dict(message))

    peer = Peer()
    await middleware(endpoint, passthrough)(http_scope(), peer.receive, peer.send)
    assert peer.sent == client_gets


# 10. Dispatch answers with a response of its own


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_dispatch_replaces_response_and_app_still_finishes(middleware: Middlewares) -> None:
    app_log: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        app_log.append((await receive())["type"])
        await send({"type": "http.response.body", "body": b"dropped", "more_body": False})
        app_log.append("finished")

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return PlainTextResponse("replaced", status_code=503)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(endpoint, dispatch)(http_scope(), peer.receive, peer.send)
    assert app_log == ["http.disconnect", "finished"]
    assert peer.sent[0]["status"] == 503
    assert peer.body_sent == b"replaced"


def never_disconnects() -> Receive:
    """A server's receive that hands out an empty request body, then never reports a disconnect."""
    request: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if request:
            return request.pop()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    return receive


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_dispatch_abandons_body_midway(middleware: Middlewares) -> None:
    """The app streams until told the client has gone; dispatch has read one chunk and moved on.

    The server never reports a disconnect here: the middleware itself must tell the app, or the
    app streams on forever.
    """

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        async with anyio.create_task_group() as tg:

            async def stop_on_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on_disconnect)
            while True:
                await send({"type": "http.response.body", "body": b"chunk", "more_body": True})

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        body = cast(AsyncGenerator[bytes, None], cast(StreamingResponse, response).body_iterator)
        try:
            assert await anext(body) == b"chunk"
        finally:
            await body.aclose()
        return PlainTextResponse("replaced")

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await middleware(endpoint, dispatch)(http_scope(), never_disconnects(), peer.send)
    assert peer.body_sent == b"replaced"


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_dispatch_builds_new_response_from_body(anyio_backend: Backend, middleware: Middlewares) -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("quiet please", status_code=201)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        body = await read_body(response)
        return PlainTextResponse(body.decode().upper(), status_code=response.status_code)

    client = TestClient(middleware(app_of(endpoint), dispatch), backend=anyio_backend)
    response = client.get("/")
    assert (response.status_code, response.text) == (201, "QUIET PLEASE")


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_dispatch_answers_without_calling_app(anyio_backend: Backend, middleware: Middlewares) -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)  # pragma: no cover

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        return PlainTextResponse("short-circuit")

    client = TestClient(middleware(app, dispatch), backend=anyio_backend)
    assert client.get("/").text == "short-circuit"
    assert called == []


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_request_state_shared_between_stacked_middlewares(anyio_backend: Backend, middleware: Middlewares) -> None:
    async def outer(request: Request, call_next: CallNext) -> Response:
        request.state.user = "ada"
        return await call_next(request)

    async def inner(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["x-user"] = request.state.user
        return response

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.state.user)

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(middleware, dispatch=outer), Middleware(middleware, dispatch=inner)],
    )
    response = TestClient(app, backend=anyio_backend).get("/")
    assert (response.text, response.headers["x-user"]) == ("ada", "ada")


# 11. include= / exclude=


@pytest.mark.parametrize(
    ("options", "dispatched"),
    [
        ({"exclude": "/health"}, {"/health": False, "/api/items": True, "/": True}),
        ({"include": "/api/*"}, {"/health": False, "/api/items": True, "/": False}),
        ({"include": "/api/*", "exclude": ["/api/items"]}, {"/health": False, "/api/items": False, "/": False}),
    ],
)
def test_paths_outside_include_exclude_skip_dispatch(
    anyio_backend: Backend, options: dict[str, str | list[str]], dispatched: dict[str, bool]
) -> None:
    paths: list[str] = []

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        paths.append(request.url.path)
        return await call_next(request)

    app = HTTPMiddleware(PlainTextResponse("ok"), dispatch, **options)
    client = TestClient(app, backend=anyio_backend)
    for path in dispatched:
        assert client.get(path).text == "ok"
    assert paths == [path for path, expected in dispatched.items() if expected]


# 12. Misuse


def test_dispatch_returning_none_is_a_type_error(anyio_backend: Backend) -> None:
    async def forgot_to_return(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return None  # type: ignore[return-value]

    client = TestClient(HTTPMiddleware(PlainTextResponse("ok"), forgot_to_return), backend=anyio_backend)
    with pytest.raises(TypeError, match=r"forgot_to_return.* returned None; it must return a Response"):
        client.get("/")


def test_call_next_twice_is_a_runtime_error(anyio_backend: Backend) -> None:
    async def greedy(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return await call_next(request)

    client = TestClient(HTTPMiddleware(PlainTextResponse("ok"), greedy), backend=anyio_backend)
    with pytest.raises(RuntimeError, match=r"call_next\(\) was awaited twice"):
        client.get("/")


@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_app_without_response_is_a_runtime_error(middleware: Middlewares) -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    peer = Peer()
    with pytest.raises(RuntimeError, match="No response returned"):
        await middleware(silent, passthrough)(http_scope(), peer.receive, peer.send)
    assert peer.sent == []
