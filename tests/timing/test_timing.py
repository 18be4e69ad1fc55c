"""`TimingMiddleware`, `timing()` and `record_timing()`: headers, metrics, options, errors, streaming."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from wire import exchange

import starlette_mw
from starlette_mw import App, CallNext, HTTPMiddleware, TimingMiddleware, record_timing, timing
from starlette_mw.testing import Response as HTTPResponse

LiveServer = Callable[..., str]
Client = Callable[..., Any]

# One Server-Timing metric as the middleware writes it: name, optional dur, optional quoted desc.
METRIC = re.compile(r'([^;,\s]+)(?:;dur=([0-9.]+))?(?:;desc="((?:[^"\\]|\\.)*)")?')


def metrics(response: HTTPResponse) -> list[tuple[str, float | None, str | None]]:
    """The Server-Timing metrics of a response, parsed strictly: anything unexpected fails the test."""
    found = []
    for header in response.headers.get_list("server-timing"):
        position = 0
        while position < len(header):
            match = METRIC.match(header, position)
            assert match is not None, f"unparsable Server-Timing at {header[position:]!r} in {header!r}"
            name, dur, desc = match.groups()
            found.append(
                (name, None if dur is None else float(dur), None if desc is None else re.sub(r"\\(.)", r"\1", desc))
            )
            position = match.end()
            if position < len(header):
                assert header.startswith(", ", position), f"no ', ' after {match.group()!r} in {header!r}"
                position += 2
    return found


def names(response: HTTPResponse) -> list[str]:
    return [name for name, _, _ in metrics(response)]


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def timed_app(*middleware: Middleware, routes: list[Route] | None = None) -> Starlette:
    return App(routes=routes or [Route("/", hello)], middleware=list(middleware))


def client(app: ASGIApp, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def get(app: ASGIApp, path: str = "/", **kwargs: Any) -> httpx.Response:
    async with client(app) as http:
        return await http.get(path, **kwargs)


# Headers on every response


@pytest.mark.anyio
async def test_default_headers_measure_the_same_time() -> None:
    async def slow(request: Request) -> Response:
        await anyio.sleep(0.05)
        return PlainTextResponse("slow")

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", slow)]))
    assert response.text == "slow"
    seconds = response.headers["X-Process-Time"]
    assert re.fullmatch(r"\d+\.\d{6}", seconds)
    [(name, dur, desc)] = metrics(response)
    assert (name, desc) == ("app", None)
    assert dur is not None and re.search(r";dur=\d+\.\d{3}$", response.headers["server-timing"])
    # One reading, two units: seconds with six decimals, milliseconds with three.
    assert f"{float(seconds) * 1000:.3f}" == f"{dur:.3f}"
    assert float(seconds) >= 0.05  # it measured the endpoint's sleep
    assert "timing-allow-origin" not in response.headers


@pytest.mark.anyio
async def test_every_status_and_method_gets_the_headers() -> None:
    async def missing(request: Request) -> Response:
        raise HTTPException(404)

    async def created(request: Request) -> Response:
        return JSONResponse({"ok": True}, status_code=201)

    app = timed_app(
        Middleware(TimingMiddleware),
        routes=[Route("/missing", missing), Route("/created", created, methods=["POST"])],
    )
    async with client(app) as http:
        for response in (
            await http.get("/missing"),
            await http.post("/created"),
            await http.get("/no-such-route"),
            await http.put("/created"),  # 405 from the router
            await http.head("/created"),
        ):
            assert "x-process-time" in response.headers, response
            assert names(response) == ["app"], response


@pytest.mark.anyio
async def test_names_description_and_precision_are_configurable() -> None:
    app = timed_app(
        Middleware(
            TimingMiddleware,
            process_time_header="X-Response-Time",
            metric="total",
            description='whole "request" (100%)',
            precision=1,
        )
    )
    response = await get(app)
    assert "x-process-time" not in response.headers
    assert re.fullmatch(r"\d+\.\d{4}", response.headers["x-response-time"])
    assert re.fullmatch(r'total;dur=\d+\.\d;desc="whole \\"request\\" \(100%\)"', response.headers["server-timing"])
    assert metrics(response)[0][2] == 'whole "request" (100%)'

    response = await get(timed_app(Middleware(TimingMiddleware, precision=0)))
    assert re.fullmatch(r"\d+\.\d{3}", response.headers["x-process-time"])
    assert re.fullmatch(r"app;dur=\d+", response.headers["server-timing"])


@pytest.mark.anyio
async def test_each_header_can_be_turned_off() -> None:
    response = await get(timed_app(Middleware(TimingMiddleware, process_time_header=None)))
    assert "x-process-time" not in response.headers
    assert names(response) == ["app"]

    response = await get(timed_app(Middleware(TimingMiddleware, server_timing=False)))
    assert "server-timing" not in response.headers
    assert "x-process-time" in response.headers

    async def with_metric(request: Request) -> Response:
        record_timing(request, "db", 0.002)
        return PlainTextResponse("hello")

    # Without the total, the handlers' metrics still go out.
    app = timed_app(Middleware(TimingMiddleware, metric=None), routes=[Route("/", with_metric)])
    assert metrics(await get(app)) == [("db", 2.0, None)]
    # Without the total and without metrics there is no empty header.
    response = await get(timed_app(Middleware(TimingMiddleware, metric=None)))
    assert "server-timing" not in response.headers


@pytest.mark.anyio
async def test_the_apps_own_headers_are_kept() -> None:
    async def own(request: Request) -> Response:
        response = PlainTextResponse("hello", headers={"Server-Timing": "cdn;dur=1", "X-Process-Time": "stale"})
        response.headers.append("Vary", "Accept")
        return response

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", own)]))
    # Server-Timing is a list: the app's own line stays next to ours. X-Process-Time is ours.
    assert response.headers.get_list("server-timing")[0] == "cdn;dur=1"
    assert names(response) == ["cdn", "app"]
    assert response.headers.get_list("x-process-time") != ["stale"]
    assert len(response.headers.get_list("x-process-time")) == 1
    assert response.headers["vary"] == "Accept"


@pytest.mark.anyio
async def test_a_response_object_sent_twice_does_not_pile_up_headers() -> None:
    shared = PlainTextResponse("shared")

    async def reused(request: Request) -> Response:
        return shared

    app = timed_app(Middleware(TimingMiddleware), routes=[Route("/", reused)])
    async with client(app) as http:
        for _ in range(3):
            response = await http.get("/")
            assert names(response) == ["app"]
            assert len(response.headers.get_list("x-process-time")) == 1
    assert [name for name, _ in shared.raw_headers] == [b"content-length", b"content-type"]


# Metrics from handlers and inner middleware


@pytest.mark.anyio
async def test_metrics_from_the_handler_in_the_order_they_end() -> None:
    async def handler(request: Request) -> Response:
        with timing(request, "db", "query users"):
            await anyio.sleep(0.01)
        async with timing(request, "cache"):
            pass

        @timing(request, "render", "template")
        def render() -> str:
            return "rendered"

        @timing(request, "fetch")
        async def fetch() -> str:
            await anyio.lowlevel.checkpoint()
            return "fetched"

        body = render() + (await fetch()) + render()
        record_timing(request, "db", 0.0015, "second query")
        record_timing(request, "hit", description="from cache")
        record_timing(request, "flag")
        return PlainTextResponse(body)

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    assert response.text == "renderedfetchedrendered"
    found = metrics(response)
    assert [(name, desc) for name, _, desc in found] == [
        ("app", None),
        ("db", "query users"),
        ("cache", None),
        ("render", "template"),
        ("fetch", None),
        ("render", "template"),
        ("db", "second query"),
        ("hit", "from cache"),
        ("flag", None),
    ]
    durations = {name: dur for name, dur, desc in found if desc != "second query"}
    assert durations["db"] is not None and durations["db"] >= 10  # ms: it timed the sleep
    assert [dur for name, dur, desc in found if desc == "second query"] == [1.5]
    assert durations["hit"] is None and durations["flag"] is None


@pytest.mark.anyio
async def test_a_timed_block_that_raises_is_still_recorded() -> None:
    async def handler(request: Request) -> Response:
        try:
            with timing(request, "db"):
                raise LookupError("no row")
        except LookupError:
            return PlainTextResponse("fallback")

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    assert response.text == "fallback"
    assert names(response) == ["app", "db"]


def test_a_sync_endpoint_in_the_threadpool_records_metrics(mw_client: Client) -> None:
    def handler(request: Request) -> Response:
        with timing(request, "sync"):
            pass
        record_timing(request, "thread", 0.001)
        return PlainTextResponse(threading.current_thread().name)

    response = mw_client(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)])).get("/")
    assert response.text != threading.current_thread().name  # it did run in another thread
    assert [name for name, _, _ in metrics(response)] == ["app", "sync", "thread"]


class DatabaseTimer:
    """A plain ASGI middleware inside TimingMiddleware that records a metric through the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with timing(scope, "inner", "plain ASGI"):
                await anyio.lowlevel.checkpoint()
            record_timing(scope, "pool", description="warm")
        await self.app(scope, receive, send)


@pytest.mark.anyio
async def test_inner_middleware_records_through_the_scope() -> None:
    async def handler(request: Request) -> Response:
        record_timing(request, "endpoint")
        return PlainTextResponse("hello")

    app = timed_app(Middleware(TimingMiddleware), Middleware(DatabaseTimer), routes=[Route("/", handler)])
    assert names(await get(app)) == ["app", "inner", "pool", "endpoint"]


@pytest.mark.anyio
async def test_without_the_middleware_timing_calls_do_nothing() -> None:
    async def handler(request: Request) -> Response:
        with timing(request, "db"):
            pass
        record_timing(request, "cache", 0.1)
        return PlainTextResponse("hello")

    response = await get(Starlette(routes=[Route("/", handler)]))
    assert response.text == "hello"
    assert "server-timing" not in response.headers


@pytest.mark.anyio
async def test_metrics_that_end_after_the_response_started_are_left_out() -> None:
    async def handler(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"first "
            record_timing(request, "late", 0.001)
            with timing(request, "later"):
                yield b"second"

        record_timing(request, "early", 0.001)
        return StreamingResponse(body())

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    assert response.text == "first second"
    assert names(response) == ["app", "early"]


# Validation: nothing can break or inject a header


@pytest.mark.parametrize(
    "name",
    ["", "two words", 'quote"', "semi;colon", "com,ma", "new\nline", "cr\rlf", "tab\t", "ünïcode", "a=b", "x(y)"],
)
def test_metric_names_must_be_tokens(name: str) -> None:
    scope: Scope = {"type": "http"}
    with pytest.raises(ValueError, match=r"is not an HTTP token.*use a name such as"):
        timing(scope, name)
    with pytest.raises(ValueError, match=r"is not an HTTP token"):
        record_timing(scope, name, 0.1)
    with pytest.raises(ValueError, match=r"metric name .* is not an HTTP token"):
        TimingMiddleware(Starlette(), metric=name)


def test_wrong_types_in_handler_calls() -> None:
    scope: Scope = {"type": "http"}
    with pytest.raises(TypeError, match=r"metric name 3 has type int"):
        timing(scope, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Description of metric 'db' b'x' has type bytes"):
        record_timing(scope, "db", 1.0, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Duration of metric 'db' is '1'; give seconds as a number"):
        record_timing(scope, "db", "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Duration of metric 'db' is True"):
        record_timing(scope, "db", True)


HOSTILE_DESCRIPTIONS = [
    'say "hi"',
    "back\\slash",
    'end\\"',
    "line\r\nX-Injected: yes",
    "nul\x00byte",
    "bell\x07 and del\x7f",
    "tab\tkept",
    "unicode: café ✓",
    "comma, semicolon; equals=",
    "",
]


@pytest.mark.anyio
async def test_descriptions_are_quoted_and_cannot_break_the_header() -> None:
    async def handler(request: Request) -> Response:
        for index, description in enumerate(HOSTILE_DESCRIPTIONS):
            record_timing(request, f"m{index}", 0.001, description)
        return PlainTextResponse("hello")

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    assert "x-injected" not in response.headers
    [header] = response.headers.get_list("server-timing")
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", header)
    found = metrics(response)[1:]
    assert [name for name, _, _ in found] == [f"m{index}" for index in range(len(HOSTILE_DESCRIPTIONS))]
    descriptions = [desc for _, _, desc in found]
    # Quotes and backslashes survive escaping; control characters become spaces; an empty
    # description is left out; non-ASCII text goes out as UTF-8 bytes.
    assert descriptions[:3] == ['say "hi"', "back\\slash", 'end\\"']
    assert descriptions[3] == "line  X-Injected: yes"
    assert descriptions[4:7] == ["nul byte", "bell  and del ", "tab\tkept"]
    assert descriptions[7] == "unicode: café ✓"
    assert '"unicode: café ✓"'.encode() in dict(response.headers.raw)[b"server-timing"]
    assert descriptions[8:] == ["comma, semicolon; equals=", None]


def test_hostile_descriptions_on_the_wire_under_uvicorn(mw_live_server: LiveServer) -> None:
    async def handler(request: Request) -> Response:
        record_timing(request, "evil", 0.001, request.query_params["d"])
        return PlainTextResponse("hello")

    base_url = mw_live_server(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    request = b"GET /?d=a%0D%0AX-Injected:%20yes%0D%0A%0D%0Abody HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = exchange(base_url, request)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert not any(line.lower().startswith(b"x-injected") for line in lines)
    [server_timing] = [line for line in lines if line.lower().startswith(b"server-timing:")]
    assert b'evil;dur=1.000;desc="a  X-Injected: yes    body"' in server_timing
    assert body == b"hello"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"process_time_header": "X Time"}, ValueError, r"process_time_header 'X Time' is not an HTTP token"),
        ({"process_time_header": b"X-Time"}, TypeError, r"process_time_header b'X-Time' has type bytes"),
        ({"metric": "total time"}, ValueError, r"'total time' is not an HTTP token.*'total-time'"),
        ({"description": 5}, TypeError, r"description 5 has type int"),
        ({"precision": 7}, ValueError, r"precision=7 must be a whole number of decimals from 0 to 6"),
        ({"precision": -1}, ValueError, r"precision=-1"),
        ({"precision": 2.5}, ValueError, r"precision=2.5"),
        ({"precision": True}, ValueError, r"precision=True"),
        ({"process_time_header": None, "server_timing": False}, ValueError, r"adds no header"),
        ({"timing_allow_origin": "https://app.example.com/"}, ValueError, r"write 'https://app.example.com'"),
        ({"timing_allow_origin": "https://App.Example.com"}, ValueError, r"lower case.*'https://app.example.com'"),
        ({"timing_allow_origin": "app.example.com"}, ValueError, r"add the scheme, as in 'https://app.example.com'"),
        ({"timing_allow_origin": ["https://a.example", "null"]}, ValueError, r"origin 'null' is not an origin"),
        ({"timing_allow_origin": "https://a.example/path"}, ValueError, r"no path or trailing slash"),
        ({"timing_allow_origin": []}, ValueError, r"timing_allow_origin=\[\] allows no origin"),
        ({"timing_allow_origin": 5}, TypeError, r"timing_allow_origin=5 has type int"),
        ({"timing_allow_origin": [5]}, TypeError, r"origin 5 has type int"),
        ({"timing_allow_origin": b"https://a.example"}, TypeError, r"=b'https://a.example' has type bytes; use"),
        ({"timing_allow_origin": bytearray(b"*")}, TypeError, r"has type bytearray; use '\*'"),
        ({"timing_allow_origin": "https://a.example:443"}, ValueError, r"port 443 .* write 'https://a.example'"),
        ({"timing_allow_origin": "http://a.example:99999"}, ValueError, r"a port is a number from 1 to 65535"),
        ({"timing_allow_origin": "https://a..example"}, ValueError, r"no part is empty"),
        ({"enabled": True}, TypeError, r"enabled=True is not callable"),
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        TimingMiddleware(Starlette(), **options)


def test_async_functions_are_refused_where_a_plain_function_is_needed() -> None:
    async def enabled(request: Request) -> bool:
        return True

    with pytest.raises(TypeError, match=r"enabled= function .* is an 'async def' function"):
        TimingMiddleware(Starlette(), enabled=enabled)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"timing_allow_origin= function .* is an 'async def' function"):
        TimingMiddleware(Starlette(), timing_allow_origin=enabled)  # type: ignore[arg-type]


def test_bad_configuration_fails_when_the_stack_is_built_not_on_a_request() -> None:
    app = Starlette(middleware=[Middleware(TimingMiddleware, precision=9)])
    with pytest.raises(ValueError, match=r"precision=9"):
        app.build_middleware_stack()


# Cross-origin: Timing-Allow-Origin


@pytest.mark.anyio
async def test_timing_allow_origin_from_a_string_or_a_list() -> None:
    response = await get(timed_app(Middleware(TimingMiddleware, timing_allow_origin="*")))
    assert response.headers["timing-allow-origin"] == "*"

    origins = ["https://app.example.com", "http://localhost:3000", "http://[::1]:8080"]
    response = await get(timed_app(Middleware(TimingMiddleware, timing_allow_origin=origins)))
    assert (
        response.headers["timing-allow-origin"] == "https://app.example.com, http://localhost:3000, http://[::1]:8080"
    )


@pytest.mark.anyio
async def test_timing_allow_origin_from_a_function_of_the_request() -> None:
    trusted = {"https://app.example.com", "https://admin.example.com"}

    def allow(request: Request) -> str | None:
        origin = request.headers.get("origin")
        return origin if origin in trusted else None

    app = timed_app(Middleware(TimingMiddleware, timing_allow_origin=allow))
    async with client(app) as http:
        response = await http.get("/", headers={"Origin": "https://admin.example.com"})
        assert response.headers["timing-allow-origin"] == "https://admin.example.com"
        assert response.headers["vary"] == "Origin"  # the answer depends on the origin
        response = await http.get("/", headers={"Origin": "https://evil.example"})
        assert "timing-allow-origin" not in response.headers
        assert names(response) == ["app"]  # the metrics still go out; the browser hides them


@pytest.mark.anyio
async def test_what_a_function_returns_reaches_the_header_only_if_it_is_an_origin() -> None:
    app = timed_app(
        Middleware(TimingMiddleware, timing_allow_origin=lambda request: request.headers.getlist("x-origins"))
    )
    async with client(app) as http:
        response = await http.get(
            "/",
            headers=[
                ("X-Origins", "https://ok.example"),
                ("X-Origins", "https://ok.example, https://smuggled.example"),
                ("X-Origins", "https://trailing.example/"),
                ("X-Origins", "*"),
            ],
        )
    assert response.headers["timing-allow-origin"] == "https://ok.example, *"


@pytest.mark.anyio
async def test_a_function_returning_the_wrong_type_is_a_clear_error() -> None:
    app = timed_app(Middleware(TimingMiddleware, timing_allow_origin=lambda request: 5))  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"timing_allow_origin function .* returned 5; it must return"):
        await get(app)


# Control: paths and enabled=


@pytest.mark.anyio
async def test_include_and_exclude() -> None:
    async def handler(request: Request) -> Response:
        with timing(request, "db"):
            pass
        return PlainTextResponse(request.url.path)

    app = timed_app(
        Middleware(TimingMiddleware, include=["/api/*"], exclude=["/api/health"]),
        routes=[Route("/{path:path}", handler)],
    )
    async with client(app) as http:
        assert names(await http.get("/api/users")) == ["app", "db"]
        assert names(await http.get("/api")) == ["app", "db"]
        for path in ("/api/health", "/", "/apix"):
            response = await http.get(path)
            assert response.text == path
            assert "server-timing" not in response.headers
            assert "x-process-time" not in response.headers


@pytest.mark.anyio
async def test_enabled_decides_per_request() -> None:
    seen: list[str] = []

    def internal(request: Request) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-internal") == "yes"

    async def handler(request: Request) -> Response:
        record_timing(request, "db", 0.001)
        return PlainTextResponse("hello")

    app = timed_app(Middleware(TimingMiddleware, enabled=internal), routes=[Route("/{p:path}", handler)])
    async with client(app) as http:
        inside = await http.get("/a", headers={"X-Internal": "yes"})
        outside = await http.get("/b")
    assert names(inside) == ["app", "db"]
    assert "server-timing" not in outside.headers and "x-process-time" not in outside.headers
    assert outside.text == "hello"
    assert seen == ["/a", "/b"]


def test_websockets_and_lifespan_pass_straight_through(mw_client: Client) -> None:
    started: list[str] = []

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    app = App(
        routes=[WebSocketRoute("/ws", echo)],
        middleware=[Middleware(TimingMiddleware)],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )
    with mw_client(app).websocket_connect("/ws") as websocket:
        websocket.send_text("ping")
        assert websocket.receive_text() == "ping"
    assert started == ["up"]


# Error responses


async def boom(request: Request) -> Response:
    record_timing(request, "before", 0.001)
    raise RuntimeError("endpoint failed")


@pytest.mark.anyio
@pytest.mark.parametrize("make_app", [App, lambda **kw: starlette_mw.install(Starlette(**kw)), FastAPI])
async def test_the_500_that_starlette_renders_has_the_headers(make_app: Callable[..., Starlette]) -> None:
    app = make_app(routes=[Route("/boom", boom)], middleware=[Middleware(TimingMiddleware, timing_allow_origin="*")])
    if isinstance(app, FastAPI):
        starlette_mw.install(app)
    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert names(response) == ["app", "before"]
    assert "x-process-time" in response.headers
    assert response.headers["timing-allow-origin"] == "*"


def test_the_apps_500_handler_runs_once_and_the_exception_still_reaches_the_server(mw_client: Client) -> None:
    handled: list[str] = []

    async def on_error(request: Request, exc: Exception) -> Response:
        handled.append(str(exc))
        return JSONResponse({"error": str(exc)}, status_code=500)

    app = App(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(TimingMiddleware)],
        exception_handlers={500: on_error},
    )
    response = mw_client(app, raise_server_exceptions=False).get("/boom")
    assert response.json() == {"error": "endpoint failed"}
    assert names(response) == ["app", "before"]
    assert handled == ["endpoint failed"]

    handled.clear()
    with pytest.raises(RuntimeError, match="endpoint failed"):
        mw_client(app).get("/boom")
    assert handled == ["endpoint failed"]


def test_under_uvicorn_the_500_has_the_headers_and_the_error_is_logged(
    mw_live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(routes=[Route("/boom", boom)], middleware=[Middleware(TimingMiddleware)])
    base_url = mw_live_server(app)

    def logged() -> bool:
        return any(record.exc_info and "endpoint failed" in str(record.exc_info[1]) for record in caplog.records)

    # uvicorn's own logging config stops its loggers from propagating to the root logger, where
    # caplog listens; hand caplog's handler to the logger uvicorn reports application errors on.
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(caplog.handler)
    try:
        response = httpx.get(base_url + "/boom")
        assert response.status_code == 500
        assert names(response) == ["app", "before"]
        # uvicorn logs the exception once ServerErrorMiddleware re-raises it, after the response.
        deadline = time.monotonic() + 10
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server_log.removeHandler(caplog.handler)
    assert logged()


@pytest.mark.anyio
async def test_an_outer_middleware_that_catches_the_error_still_gets_the_exception() -> None:
    caught: list[BaseException] = []

    async def fallback(request: Request, call_next: CallNext) -> Response:
        try:
            return await call_next(request)
        except RuntimeError as exc:
            caught.append(exc)
            return PlainTextResponse("degraded", status_code=503)

    app = App(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(HTTPMiddleware, dispatch=fallback), Middleware(TimingMiddleware)],
    )
    response = await get(app, "/boom")
    # TimingMiddleware did not answer the error itself: the outer middleware saw the exception,
    # and the response it made instead carries the timing of the failed request.
    assert [str(exc) for exc in caught] == ["endpoint failed"]
    assert (response.status_code, response.text) == (503, "degraded")
    assert names(response) == ["app", "before"]


@pytest.mark.anyio
async def test_without_install_the_500_goes_out_bare_and_a_warning_says_how_to_fix_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unconfigured(TimingMiddleware):
        pass

    app = Starlette(routes=[Route("/boom", boom), Route("/", hello)], middleware=[Middleware(Unconfigured)])
    with caplog.at_level(logging.WARNING, logger="starlette_mw"):
        async with client(app, raise_app_exceptions=False) as http:
            assert names(await http.get("/")) == ["app"]
            for _ in range(2):
                response = await http.get("/boom")
                assert response.status_code == 500
                assert "server-timing" not in response.headers
    [warning] = [record.getMessage() for record in caplog.records if record.name == "starlette_mw"]
    assert warning.startswith("Unconfigured could not add its headers to the error response")
    assert "starlette_mw.install(app)" in warning


@pytest.mark.anyio
async def test_an_error_after_the_response_started_keeps_the_headers_already_sent() -> None:
    async def breaks_midway(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("stream failed")

        return StreamingResponse(body())

    app = App(routes=[Route("/", breaks_midway)], middleware=[Middleware(TimingMiddleware)])
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"", "headers": []}
    with pytest.raises(RuntimeError, match="stream failed"):
        await app(scope, receive, record)
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert len(starts) == 1  # ServerErrorMiddleware does not send a second start
    assert any(name == b"server-timing" for name, _ in starts[0]["headers"])


# Plain ASGI: streaming, background tasks, context variables, dispatch overrides


def test_streaming_bodies_stream_and_the_header_measures_the_start(mw_live_server: LiveServer) -> None:
    release = threading.Event()
    finished = threading.Event()

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"first\n"
            await anyio.to_thread.run_sync(release.wait, 10)
            finished.set()
            yield b"second\n"

        return StreamingResponse(body())

    base_url = mw_live_server(timed_app(Middleware(TimingMiddleware), routes=[Route("/", stream)]))
    with httpx.stream("GET", base_url + "/", timeout=10) as response:
        # Headers and the first chunk arrive while the body is still waiting to be released.
        assert names(response) == ["app"]
        lines = response.iter_lines()
        assert next(lines) == "first"
        assert not finished.is_set()
        release.set()
        assert next(lines) == "second"
    assert finished.is_set()


@pytest.mark.anyio
async def test_background_tasks_run_after_the_response() -> None:
    events: list[str] = []

    async def handler(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(events.append, "background ran"))

    response = await get(timed_app(Middleware(TimingMiddleware), routes=[Route("/", handler)]))
    assert names(response) == ["app"]
    assert events == ["background ran"]


REQUEST_USER: contextvars.ContextVar[str] = contextvars.ContextVar("request_user", default="nobody")


class ReadsContext:
    """An outer plain ASGI middleware that reads, after the app, a context variable the endpoint set."""

    def __init__(self, app: ASGIApp, *, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append(REQUEST_USER.get())


@pytest.mark.anyio
async def test_context_variables_set_by_the_endpoint_reach_outer_middleware() -> None:
    seen: list[str] = []

    async def handler(request: Request) -> Response:
        REQUEST_USER.set("alice")
        return PlainTextResponse("hello")

    # Under BaseHTTPMiddleware the endpoint runs in another task and this would read "nobody".
    app = timed_app(Middleware(ReadsContext, seen=seen), Middleware(TimingMiddleware), routes=[Route("/", handler)])
    assert names(await get(app)) == ["app"]
    assert seen == ["alice"]


@pytest.mark.anyio
async def test_a_subclass_that_overrides_dispatch_works_the_base_http_middleware_way() -> None:
    calls: list[str] = []

    class Tagged(TimingMiddleware):
        async def dispatch(self, request: Request, call_next: CallNext) -> Response:
            calls.append(request.url.path)
            response = await call_next(request)
            response.headers["X-Seen-Timing"] = str("server-timing" in response.headers)
            return response

    async def handler(request: Request) -> Response:
        record_timing(request, "db", 0.001)
        return PlainTextResponse("hello")

    app = timed_app(Middleware(Tagged, exclude="/skip"), routes=[Route("/{p:path}", handler)])
    async with client(app) as http:
        response = await http.get("/a")
        skipped = await http.get("/skip")
    assert response.headers["x-seen-timing"] == "True"
    assert names(response) == ["app", "db"]
    assert "x-seen-timing" not in skipped.headers and "server-timing" not in skipped.headers
    assert calls == ["/a"]


@pytest.mark.anyio
async def test_concurrent_requests_keep_their_own_metrics() -> None:
    async def handler(request: Request) -> Response:
        name = request.path_params["name"]
        for _ in range(3):
            with timing(request, name):
                await anyio.sleep(0.001)
        return PlainTextResponse(name)

    app = timed_app(Middleware(TimingMiddleware), routes=[Route("/{name}", handler)])
    responses: dict[str, httpx.Response] = {}
    async with client(app) as http:

        async def fetch(name: str) -> None:
            responses[name] = await http.get(f"/{name}")

        async with anyio.create_task_group() as tasks:
            for name in ("a", "b", "c", "d"):
                tasks.start_soon(fetch, name)
    for name, response in responses.items():
        assert names(response) == ["app", name, name, name]


@pytest.mark.anyio
async def test_a_timing_allow_origin_function_always_varies_on_origin() -> None:
    async def own(request: Request) -> Response:
        return PlainTextResponse(
            "hi", headers={"Vary": "X-Origin-Token", "Timing-Allow-Origin": "https://partner.example"}
        )

    allowed = "https://app.example.com"
    app = timed_app(
        Middleware(
            TimingMiddleware, timing_allow_origin=lambda r: allowed if r.headers.get("origin") == allowed else None
        ),
        routes=[Route("/", own)],
    )
    async with client(app) as http:
        yes = await http.get("/", headers={"Origin": allowed})
        no = await http.get("/", headers={"Origin": "https://other.example"})
    # One Vary, with the app's item and Origin, matched as items (not 'origin' inside a name).
    assert yes.headers.get_list("vary") == no.headers.get_list("vary") == ["X-Origin-Token, Origin"]
    assert yes.headers.get_list("timing-allow-origin") == [allowed]
    # Where the function allows nothing, the app's own header stays.
    assert no.headers.get_list("timing-allow-origin") == ["https://partner.example"]


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -2.0])
def test_durations_must_be_finite_and_not_negative(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"Server-Timing durations are finite and not negative"):
        record_timing({"type": "http"}, "x", seconds)
