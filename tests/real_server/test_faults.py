"""Faults through the whole stack: nothing is lost or left hanging, and the error reaches the log.

The stack is what an application would have: `App` (with its error layer), `CORSMiddleware`,
`TimingMiddleware`, `RedirectMiddleware`, a user's `BaseHTTPMiddleware` and plain ASGI middleware,
and an `@app.middleware("http")` function, with the app's own 500 handler. The faults: an endpoint
raising before and during a streamed body, a client leaving mid-stream, requests cancelled at
several points, middleware raising, and the server shutting down with requests in flight. Real
uvicorn on loopback wherever a server is involved; bounded waits everywhere, never a timing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

import anyio
import httpx
import pytest
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw import (
    App,
    CallNext,
    CORSMiddleware,
    HTTPMiddleware,
    Redirect,
    RedirectMiddleware,
    TimingMiddleware,
    record_timing,
)
from starlette_mw.testing import server_timing
from starlette_mw.testing.live import LiveServer

LiveServerFactory = Callable[..., str]

ORIGIN = "https://app.example.com"
# Any wait for something that should happen at once; reached only when the code under test hangs.
BOUND = 10


class EndpointFailure(Exception):
    pass


class MiddlewareFailure(Exception):
    pass


class Record:
    """What one app saw, shared between the server's thread and the test's; thread-safe enough for that."""

    def __init__(self) -> None:
        self.handled: list[str] = []  # the app's own 500 handler, once per failed request
        self.events: list[str] = []
        self.entered = threading.Event()  # an endpoint that waits has started waiting
        self.gate = threading.Event()  # ... and goes on once the test sets this
        self.stream_closed = threading.Event()  # a streaming body's `finally` ran
        self.background_ran = threading.Event()
        self.shutdown_ran = threading.Event()

    async def on_error(self, request: Request, exc: Exception) -> Response:
        self.handled.append(repr(exc))
        return PlainTextResponse("sorry", status_code=500)


def routes(record: Record) -> list[Route]:
    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def boom(request: Request) -> Response:
        record_timing(request, "before-boom", 0.001)
        raise EndpointFailure("before the response")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"first"
                if request.query_params.get("fail"):
                    raise EndpointFailure("mid-stream")
                while True:  # until the client leaves, or the request is cancelled
                    await anyio.sleep(0.01)
                    yield b"."
            finally:
                record.stream_closed.set()

        return StreamingResponse(chunks())

    async def wait(request: Request) -> Response:
        # Recorded before waiting: a request cancelled here must not leave it to the next one.
        record_timing(request, "waited")
        record.entered.set()
        # A request cancelled here leaves the thread to wait on its own until the gate opens.
        gate_opened = await anyio.to_thread.run_sync(record.gate.wait, BOUND, abandon_on_cancel=True)
        return PlainTextResponse(
            "done" if gate_opened else "gate never opened", background=BackgroundTask(record.background_ran.set)
        )

    return [
        Route("/ok", ok),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/wait", wait),
    ]


class Tag(HTTPMiddleware):
    """A user's class-based middleware that reads the body in dispatch, so it flows through dispatch."""

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        response = await read_in_dispatch(request, call_next)
        response.headers["x-tag"] = "yes"
        return response


class StarletteTag(BaseHTTPMiddleware):
    """The same, on Starlette's own BaseHTTPMiddleware."""

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["x-tag"] = "yes"
        return response


# The user's class-based middleware in the stack: ours, or Starlette's.
USER_CLASSES = [pytest.param(Tag, id="HTTPMiddleware"), pytest.param(StarletteTag, id="BaseHTTPMiddleware")]


class Audit:
    """A user's plain ASGI middleware that edits the response start; `fail_on_start` makes its wrapper raise."""

    def __init__(self, app: ASGIApp, *, fail_on_start: bool = False) -> None:
        self.app = app
        self.fail_on_start = fail_on_start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                if self.fail_on_start:
                    raise MiddlewareFailure("in the send wrapper")
                message = {**message, "headers": [*message.get("headers", ()), (b"x-audit", b"yes")]}
            await send(message)

        await self.app(scope, receive, audited)


def full_stack(
    record: Record,
    *,
    outer: Sequence[Middleware] = (),
    inner: Sequence[Middleware] = (),
    user_class: type[BaseHTTPMiddleware] = Tag,
) -> App:
    """The whole package in one app, with `outer` outside its middleware and `inner` inside them."""

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        yield
        record.shutdown_ran.set()

    app = App(
        routes=routes(record),
        middleware=[
            *outer,
            Middleware(CORSMiddleware, preset="first-party", allow_origins=[ORIGIN]),
            Middleware(TimingMiddleware),
            Middleware(RedirectMiddleware, rules=[Redirect("/old", "/ok")]),
            Middleware(user_class),
            Middleware(Audit),
            *inner,
        ],
        exception_handlers={500: record.on_error},
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def observe(request: Request, call_next: CallNext) -> Response:
        try:
            response = await call_next(request)
        except Exception as exc:
            record.events.append(f"observed {exc!r}")
            raise
        response.headers["x-observed"] = "yes"
        return response

    return app


def assert_package_headers(response: httpx.Response) -> None:
    """CORS for the allowed origin, with the timing headers exposed to it: what the page needs to read a 500."""
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]
    assert "x-process-time" in response.headers
    assert server_timing(response)[0].name == "app"
    exposed = {name.strip().lower() for name in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-process-time", "server-timing"} <= exposed


class ServerLog(logging.Handler):
    """Collects what uvicorn logs on "uvicorn.error"; attached to that logger itself, since uvicorn's
    own logging configuration may stop it from propagating to the root logger."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def errors(self) -> list[str]:
        return [repr(record.exc_info[1]) for record in self.records if record.exc_info]

    def wait_for(self, found: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(found, BOUND)

    def wait_for_error(self, error: str) -> bool:
        return self.wait_for(lambda: error in self.errors())

    def wait_for_message(self, text: str) -> bool:
        return self.wait_for(lambda: any(text in record.getMessage() for record in self.records))


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    logger = logging.getLogger("uvicorn.error")
    handler = ServerLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # uvicorn reports its shutdown steps at INFO
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def running_tasks() -> int:
    """Tasks alive on the current event loop, asyncio's or trio's, once the loop has had a few passes.

    The passes matter on asyncio: an app that `HTTPMiddleware` ran to its end inline (see
    `_tasks.py`) leaves its Task object pending until the loop steps it once, to no effect.
    """
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no asyncio loop: trio
        import trio

        return trio.lowlevel.current_statistics().tasks_living


def http_scope(path: str, query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), (b"origin", ORIGIN.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
        "extensions": {},
    }


@asynccontextmanager
async def in_process(app: ASGIApp, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"origin": ORIGIN}) as http:
        yield http


# 1. The endpoint raises before its response starts


@pytest.mark.anyio
async def test_endpoint_raising_gives_a_500_with_the_packages_headers_and_the_handler_runs_once() -> None:
    record = Record()
    app = full_stack(record)
    before = await running_tasks()
    async with in_process(app, raise_app_exceptions=False) as http:
        response = await http.get("/boom")
        assert (response.status_code, response.text) == (500, "sorry")  # the app's own handler answered
        assert_package_headers(response)
        assert [metric.name for metric in server_timing(response)] == ["app", "before-boom"]
        assert record.handled == ["EndpointFailure('before the response')"]
        # The layers outside the endpoint saw the exception once, and none answered it instead.
        assert record.events == ["observed EndpointFailure('before the response')"]
        assert "x-observed" not in response.headers
        # The app goes on serving, with the headers every response has.
        after = await http.get("/ok")
        assert (after.status_code, after.text) == (200, "ok")
        assert after.headers["x-observed"] == after.headers["x-tag"] == after.headers["x-audit"] == "yes"
        assert [metric.name for metric in server_timing(after)] == ["app"]
    assert record.handled == ["EndpointFailure('before the response')"]
    assert await running_tasks() == before


@pytest.mark.anyio
async def test_endpoint_exception_reaches_the_server() -> None:
    record = Record()
    async with in_process(full_stack(record)) as http:
        with pytest.raises(EndpointFailure, match="before the response"):
            await http.get("/boom")
    assert record.handled == ["EndpointFailure('before the response')"]


def test_under_uvicorn_the_500_has_the_headers_and_the_exception_is_logged_once(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    record = Record()
    base_url = mw_live_server(full_stack(record))
    response = httpx.get(base_url + "/boom", headers={"origin": ORIGIN}, timeout=BOUND)
    assert (response.status_code, response.text) == (500, "sorry")
    assert_package_headers(response)
    # uvicorn logs once the app has raised, after the client has its 500. (It then closes that
    # connection, so the next request takes another: reused at once, it could be found reset.)
    assert server_log.wait_for_error("EndpointFailure('before the response')")
    assert httpx.get(base_url + "/ok", timeout=BOUND).text == "ok"
    assert server_log.errors() == ["EndpointFailure('before the response')"]
    assert record.handled == ["EndpointFailure('before the response')"]


# 2. The endpoint raises after its streamed body has started


@pytest.mark.anyio
async def test_endpoint_raising_mid_stream_ends_the_request_with_the_exception() -> None:
    record = Record()
    app = full_stack(record)
    sent: list[Message] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    before = await running_tasks()
    with anyio.fail_after(BOUND), pytest.raises(EndpointFailure, match="mid-stream"):
        await app(http_scope("/stream", b"fail=1"), receive, send)
    assert record.stream_closed.is_set()
    [start, *body] = sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert headers[b"x-observed"] == headers[b"x-tag"] == headers[b"x-audit"] == b"yes"
    assert b"x-process-time" in headers
    # Only what was sent before the failure; never a "complete" last message that hides it.
    assert b"".join(message.get("body", b"") for message in body) == b"first"
    assert all(message.get("more_body") for message in body), body
    # Starlette calls the app's 500 handler once all the same (it may log), but cannot send its answer.
    assert record.handled == ["EndpointFailure('mid-stream')"]
    assert await running_tasks() == before


async def fail_mid_stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise EndpointFailure("mid-stream")

    return StreamingResponse(chunks())


async def forward(request: Request, call_next: CallNext) -> Response:
    return await call_next(request)


async def read_in_dispatch(request: Request, call_next: CallNext) -> Response:
    response = cast(StreamingResponse, await call_next(request))
    body = response.body_iterator

    async def passed_on() -> AsyncIterator[str | bytes | memoryview]:
        async for chunk in body:
            yield chunk

    response.body_iterator = passed_on()
    return response


async def wrap_in_dispatch(request: Request, call_next: CallNext) -> Response:
    response = cast(StreamingResponse, await call_next(request))
    return StreamingResponse(response.body_iterator, headers=response.headers)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "middleware",
    [
        pytest.param([], id="no-middleware"),
        pytest.param([Middleware(CORSMiddleware, preset="first-party", allow_origins=[ORIGIN])], id="cors"),
        pytest.param([Middleware(TimingMiddleware)], id="timing"),
        pytest.param([Middleware(RedirectMiddleware, rules=[Redirect("/old", "/new")])], id="redirect"),
        pytest.param([Middleware(HTTPMiddleware, dispatch=forward)], id="decorator-forwards"),
        pytest.param([Middleware(HTTPMiddleware, dispatch=read_in_dispatch)], id="decorator-reads-body"),
        pytest.param([Middleware(HTTPMiddleware, dispatch=wrap_in_dispatch)], id="decorator-wraps-body"),
        pytest.param([Middleware(Audit)], id="plain-asgi"),
        pytest.param(
            [Middleware(BaseHTTPMiddleware, dispatch=forward)],
            id="starlette-BaseHTTPMiddleware",
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "Starlette's BaseHTTPMiddleware ends the body it carries normally when the app fails "
                    "mid-stream, so the server sends the last chunk and the client takes the truncated "
                    "body for a complete one."
                ),
            ),
        ),
    ],
)
async def test_each_layer_alone_keeps_a_failed_stream_from_looking_complete(middleware: list[Middleware]) -> None:
    app = App(routes=[Route("/", fail_mid_stream)], middleware=middleware)
    sent: list[Message] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(BOUND), pytest.raises(EndpointFailure, match="mid-stream"):
        await app(http_scope("/"), receive, send)
    assert sent[0]["type"] == "http.response.start"
    # A server ends a response only on a message without more_body (chunked: the last, empty chunk).
    assert [message.get("body") for message in sent[1:] if message.get("body")] == [b"first"]
    assert all(message.get("more_body") for message in sent[1:])


def test_under_uvicorn_a_stream_that_fails_is_cut_off_and_logged_and_the_server_goes_on(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    record = Record()
    base_url = mw_live_server(full_stack(record))
    with httpx.Client(base_url=base_url, headers={"origin": ORIGIN}, timeout=BOUND) as http:
        received = b""
        with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", "/stream?fail=1") as response:
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == ORIGIN
            for chunk in response.iter_raw():
                received += chunk
        assert received == b"first"
        assert server_log.wait_for_error("EndpointFailure('mid-stream')")
        assert record.stream_closed.is_set()
        later = http.get("/ok")
        assert (later.status_code, later.text) == (200, "ok")
        assert later.headers["x-observed"] == "yes"
    assert record.handled == ["EndpointFailure('mid-stream')"]
    assert server_log.errors() == ["EndpointFailure('mid-stream')"]


# 3. The client leaves mid-stream


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection before sending {marker!r}; got {data!r}"
        data += chunk
    return data


def test_under_uvicorn_a_client_leaving_mid_stream_stops_the_stream_and_nothing_else(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    record = Record()
    base_url = mw_live_server(full_stack(record))
    host, port = base_url.removeprefix("http://").split(":")

    # Another request is in flight, waiting in its endpoint, with a background task to run after it.
    other: list[httpx.Response] = []
    other_thread = threading.Thread(target=lambda: other.append(httpx.get(base_url + "/wait", timeout=BOUND)))
    other_thread.start()
    assert record.entered.wait(BOUND)

    with socket.create_connection((host, int(port)), timeout=BOUND) as sock:
        sock.sendall(f"GET /stream HTTP/1.1\r\nHost: {host}\r\nOrigin: {ORIGIN}\r\n\r\n".encode())
        head = read_until(sock, b"first")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"access-control-allow-origin: " + ORIGIN.encode() in head
    # The socket is closed: the server notices and stops the generator.
    assert record.stream_closed.wait(BOUND)

    record.gate.set()
    other_thread.join(BOUND)
    assert not other_thread.is_alive()
    [response] = other
    assert (response.status_code, response.text) == (200, "done")
    assert record.background_ran.wait(BOUND)
    assert httpx.get(base_url + "/ok", timeout=BOUND).text == "ok"
    assert server_log.errors() == []  # a client leaving is not an error
    assert record.handled == []


# 4. Requests cancelled in-process


class Client:
    """The server's side of in-process requests, able to cancel one at a chosen point."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def request(self, path: str, *, cancel_at: str | None = None, record: Record | None = None) -> list[Message]:
        """Run one request; `cancel_at` "start" or "body" cancels it when that message reaches the server,
        "endpoint" once the endpoint waits (`record.entered`)."""
        sent: list[Message] = []
        done = anyio.Event()

        async def receive() -> Message:
            await done.wait()
            return {"type": "http.disconnect"}

        async with anyio.create_task_group() as tasks:

            async def send(message: Message) -> None:
                sent.append(message)
                if (cancel_at == "start" and message["type"] == "http.response.start") or (
                    cancel_at == "body" and message.get("body")
                ):
                    tasks.cancel_scope.cancel()
                elif message["type"] == "http.response.body" and not message.get("more_body"):
                    done.set()

            async def run() -> None:
                await self.app(http_scope(path), receive, send)

            tasks.start_soon(run)
            if cancel_at == "endpoint":
                assert record is not None
                # A thread-safe event, as the server-side tests need; here it is set in this loop.
                while not record.entered.is_set():
                    await anyio.lowlevel.checkpoint()
                tasks.cancel_scope.cancel()
        return sent


CANCEL_POINTS = [
    pytest.param("/wait", "endpoint", id="in-endpoint"),
    pytest.param("/ok", "start", id="at-response-start"),
    pytest.param("/stream", "body", id="mid-body"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "cancel_at"), CANCEL_POINTS)
async def test_cancelled_request_ends_cleanly_and_leaves_nothing_behind(
    path: str, cancel_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    await check_cancelled_request(path, cancel_at, caplog)


# Not on trio: Starlette's StreamingResponse never closes its body iterator. Cancelled at the start,
# the app is stopped while it waits in send() either outside the generator or inside it, as trio's
# (deliberately shuffled) scheduling has it; outside, the generator is dropped unfinished, its
# `finally` runs only once it is collected, and trio warns (ResourceWarning). Starlette's own
# BaseHTTPMiddleware does the same; such a case can neither pass nor fail reliably.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_cancelled_at_the_start_of_a_stream_ends_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    await check_cancelled_request("/stream", "start", caplog)


async def check_cancelled_request(path: str, cancel_at: str, caplog: pytest.LogCaptureFixture) -> None:
    # What earlier tests left to the collector is reported now, not during this test: a hypothesis
    # test run by anyio's runner (tests/fuzz) can leave a task whose StopTest nobody retrieved, which
    # asyncio logs when the task is collected.
    gc.collect()
    caplog.clear()
    record = Record()
    app = full_stack(record)
    requests: list[weakref.ref[Request]] = []

    @app.middleware("http")
    async def remember(request: Request, call_next: CallNext) -> Response:
        requests.append(weakref.ref(request))
        return await call_next(request)

    client = Client(app)
    before = await running_tasks()
    with anyio.fail_after(BOUND):
        sent = await client.request(path, cancel_at=cancel_at, record=record)
        # Anything left unfinished is found now, in this test (trio warns of async generators). On
        # asyncio a cancelled request is part of a reference cycle, so only the collector frees it.
        gc.collect()
        assert [ref() for ref in requests] == [None]
        if path == "/stream":
            assert record.stream_closed.is_set()
        if cancel_at == "endpoint":
            record.gate.set()  # the thread the endpoint waited in can end
            assert sent == []
        assert await running_tasks() == before

        # The next request on the same app is whole, and carries nothing of the cancelled one.
        after = await client.request("/ok")
    start, *body = after
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert b"".join(message.get("body", b"") for message in body) == b"ok"
    assert headers[b"server-timing"].startswith(b"app;dur=")
    assert b"waited" not in headers[b"server-timing"]
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert headers[b"x-observed"] == headers[b"x-tag"] == headers[b"x-audit"] == b"yes"
    assert record.handled == []
    assert record.events == []  # a cancellation is not an exception the app's middleware report
    # asyncio reports a task that was garbage-collected while pending ("Task was destroyed but it is
    # pending!") through its logger, not as a warning.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# 5. A middleware raises


async def fail_before_call_next(request: Request, call_next: CallNext) -> Response:
    raise MiddlewareFailure("before call_next")


async def fail_after_call_next(request: Request, call_next: CallNext) -> Response:
    await call_next(request)
    raise MiddlewareFailure("after call_next")


FAILING_MIDDLEWARE = {
    "dispatch-before-call_next": (
        Middleware(HTTPMiddleware, dispatch=fail_before_call_next),
        "MiddlewareFailure('before call_next')",
    ),
    "dispatch-after-call_next": (
        Middleware(HTTPMiddleware, dispatch=fail_after_call_next),
        "MiddlewareFailure('after call_next')",
    ),
    "asgi-send-wrapper": (Middleware(Audit, fail_on_start=True), "MiddlewareFailure('in the send wrapper')"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/ok", "/stream"])
@pytest.mark.parametrize("failing", list(FAILING_MIDDLEWARE))
async def test_a_failing_middleware_inside_the_packages_gives_a_500_with_their_headers(failing: str, path: str) -> None:
    middleware, error = FAILING_MIDDLEWARE[failing]
    record = Record()
    app = full_stack(record, inner=[middleware])
    before = await running_tasks()
    async with in_process(app, raise_app_exceptions=False) as http:
        response = await http.get(path)
        assert (response.status_code, response.text) == (500, "sorry")
        assert_package_headers(response)
        assert record.handled == [error]
        assert record.events == [f"observed {error}"]
    assert await running_tasks() == before
    async with in_process(app) as http:
        with pytest.raises(MiddlewareFailure):
            await http.get(path)


@pytest.mark.anyio
async def test_a_failing_middleware_outside_the_packages_before_call_next_gives_a_bare_500() -> None:
    middleware, error = FAILING_MIDDLEWARE["dispatch-before-call_next"]
    record = Record()
    app = full_stack(record, outer=[middleware])
    async with in_process(app, raise_app_exceptions=False) as http:
        response = await http.get("/ok")
        assert (response.status_code, response.text) == (500, "sorry")
        # The request never reached the package's middleware, so they have nothing to add.
        assert "access-control-allow-origin" not in response.headers
        assert "x-process-time" not in response.headers
        assert record.handled == [error]
        assert record.events == [f"observed {error}"]


@pytest.mark.anyio
@pytest.mark.parametrize("failing", ["dispatch-after-call_next", "asgi-send-wrapper"])
async def test_a_failing_middleware_outside_the_packages_after_they_ran_gives_a_500_with_their_headers(
    failing: str,
) -> None:
    middleware, error = FAILING_MIDDLEWARE[failing]
    record = Record()
    app = full_stack(record, outer=[middleware])
    async with in_process(app, raise_app_exceptions=False) as http:
        response = await http.get("/ok")
    assert (response.status_code, response.text) == (500, "sorry")
    assert record.handled == [error]
    assert_package_headers(response)


def test_under_uvicorn_a_failing_middleware_is_logged_and_the_server_goes_on(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    record = Record()
    base_url = mw_live_server(full_stack(record, inner=[FAILING_MIDDLEWARE["dispatch-after-call_next"][0]]))
    for count in (1, 2):
        # A connection each: uvicorn closes the connection after an exception, even one whose 500 went
        # out whole, and a client reusing it at once could find it reset.
        response = httpx.get(base_url + "/stream", headers={"origin": ORIGIN}, timeout=BOUND)
        assert (response.status_code, response.text) == (500, "sorry")
        assert_package_headers(response)
        assert server_log.wait_for(lambda: len(server_log.errors()) == count)  # noqa: B023 - used at once
    assert server_log.errors() == ["MiddlewareFailure('after call_next')"] * 2
    assert record.handled == ["MiddlewareFailure('after call_next')"] * 2


# 6. The server shuts down with requests in flight


def test_shutdown_lets_the_request_in_flight_finish_then_runs_the_lifespan_shutdown(server_log: ServerLog) -> None:
    record = Record()
    server = LiveServer(full_stack(record))
    responses: list[httpx.Response] = []
    client = threading.Thread(target=lambda: responses.append(httpx.get(server.url + "/wait", timeout=BOUND)))
    client.start()
    assert record.entered.wait(BOUND)

    stopper = threading.Thread(target=server.stop)
    stopper.start()
    # uvicorn has begun its graceful shutdown: it waits for the request before the lifespan shutdown.
    assert server_log.wait_for_message("Waiting for connections to close")
    assert not record.shutdown_ran.is_set()
    with pytest.raises(httpx.ConnectError):  # no new connections meanwhile
        httpx.get(server.url + "/ok", timeout=BOUND)

    record.gate.set()
    client.join(BOUND)
    [response] = responses
    assert (response.status_code, response.text) == (200, "done")
    assert response.headers["x-observed"] == "yes"
    assert response.headers["server-timing"].startswith("app;dur=")
    assert record.background_ran.wait(BOUND)
    stopper.join(3 * BOUND)
    assert not stopper.is_alive()
    assert record.shutdown_ran.is_set()
    assert server_log.errors() == []


def test_shutdown_past_its_grace_period_cancels_an_endless_stream_cleanly(server_log: ServerLog) -> None:
    record = Record()
    server = LiveServer(full_stack(record), timeout_graceful_shutdown=0.2)
    received = b""
    with httpx.Client(base_url=server.url, timeout=BOUND) as http, http.stream("GET", "/stream") as response:
        chunks = response.iter_raw()
        received += next(chunks)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        # The stream goes on past the grace period, then uvicorn cancels it and closes the connection.
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in chunks:
                received += chunk
    assert received.startswith(b"first")
    assert record.stream_closed.wait(BOUND)
    stopper.join(3 * BOUND)
    assert not stopper.is_alive()
    assert record.shutdown_ran.is_set()
    assert server_log.wait_for_message("timeout graceful shutdown exceeded")
    # The cancellation went out of the app as it came in (uvicorn logs it), not turned into another error.
    assert server_log.errors() == ["CancelledError('Task cancelled, timeout graceful shutdown exceeded')"]


# 7. Many faults in a row


def run_faults(base_url: str, server_log: ServerLog, rounds: int) -> None:
    """Each round: an endpoint raising, a stream failing, a client leaving mid-stream, then a good request."""
    host, port = base_url.removeprefix("http://").split(":")
    for round_ in range(1, rounds + 1):
        assert httpx.get(base_url + "/boom", headers={"origin": ORIGIN}, timeout=BOUND).status_code == 500
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", base_url + "/stream?fail=1") as stream:
            for _ in stream.iter_raw():
                pass
        with socket.create_connection((host, int(port)), timeout=BOUND) as sock:
            sock.sendall(f"GET /stream HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            read_until(sock, b"first")
        assert httpx.get(base_url + "/ok", timeout=BOUND).text == "ok"
        assert server_log.wait_for(lambda: len(server_log.errors()) == 2 * round_)  # noqa: B023 - used at once
    assert sorted(set(server_log.errors())) == [
        "EndpointFailure('before the response')",
        "EndpointFailure('mid-stream')",
    ]


def test_under_uvicorn_faults_in_a_row_leave_the_server_serving(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    run_faults(mw_live_server(full_stack(Record())), server_log, rounds=3)


@pytest.mark.slow
def test_under_uvicorn_many_faults_in_a_row_leave_the_server_serving(
    mw_live_server: LiveServerFactory, server_log: ServerLog
) -> None:
    run_faults(mw_live_server(full_stack(Record())), server_log, rounds=200)
