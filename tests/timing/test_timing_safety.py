"""Timing safety: no client input and no accepted option makes the timing layer answer a 500.

Generated, not listed: Origin headers with ports of thousands of digits, hosts of thousands of
characters, raw bytes and control characters against a `timing_allow_origin` function that reflects
the Origin; descriptions from any text, lone surrogates included (`request.json()` makes those);
options of `TimingMiddleware` and arguments of `timing()` / `record_timing()`, each either refused
where it is written or working on every request. Every response is held to the Server-Timing
grammar (https://www.w3.org/TR/server-timing/#the-server-timing-header-field), in process through
the whole stack and as raw bytes against a real uvicorn.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wire import exchange

from starlette_mw import App, CallNext, CORSMiddleware, TimingMiddleware, record_timing, timing
from starlette_mw._request_record import wrap_error_response

LiveServer = Callable[..., str]
Headers = list[tuple[bytes, bytes]]


@pytest.fixture
def anyio_backend() -> str:
    """What is parsed and written, not concurrency: one backend is enough (test_timing.py runs both)."""
    return "asyncio"


# -- The reference: the Server-Timing grammar, and origins as browsers send them ------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_PARAM = rb"[ \t]*;[ \t]*(" + _TOKEN + rb")(?:[ \t]*=[ \t]*(" + _TOKEN + rb"|" + _QUOTED + rb"))?"
_METRIC = _TOKEN + rb"(?:" + _PARAM + rb")*"
SERVER_TIMING = re.compile(_METRIC + rb"(?:[ \t]*,[ \t]*" + _METRIC + rb")*")
METRIC = re.compile(rb"[ \t]*,?[ \t]*(" + _TOKEN + rb")((?:" + _PARAM + rb")*)")
PARAM = re.compile(_PARAM)
# Server-Timing's `dur` and X-Process-Time: a decimal number.
NUMBER = re.compile(rb"[0-9]+(?:\.[0-9]+)?")
# The longest origin a browser sends: scheme "://" a DNS name of at most 253 characters ":" port.
MAX_ORIGIN = 300


def server_timing(value: bytes) -> list[tuple[str, dict[str, str]]]:
    """The metrics of one Server-Timing value, each with its parameters (desc unquoted, as UTF-8)."""
    assert SERVER_TIMING.fullmatch(value), value
    metrics = []
    for metric in METRIC.finditer(value):
        params = {}
        for param in PARAM.finditer(metric.group(2)):
            raw = param.group(2) or b""
            if raw.startswith(b'"'):
                raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
            params[param.group(1).decode()] = raw.decode("utf-8")
        metrics.append((metric.group(1).decode(), params))
    return metrics


def check_response(status: int, headers: Headers) -> list[tuple[str, dict[str, str]]]:
    """Not a 500, every header line intact, Server-Timing by its grammar; the metrics."""
    assert status == 200, (status, headers)
    metrics = []
    for name, value in headers:
        assert re.fullmatch(_TOKEN, name), name
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), (name, value)
        if name.lower() == b"server-timing":
            metrics += server_timing(value)
            for _, params in metrics:
                assert "dur" not in params or NUMBER.fullmatch(params["dur"].encode()), params
    return metrics


def as_written(description: str) -> str:
    """What a description reads as in the header (README): control characters but tab become spaces,
    a lone surrogate, which has no UTF-8 form, becomes U+FFFD."""
    return "".join(
        " " if (char < " " and char != "\t") or char == "\x7f" else "\ufffd" if "\ud800" <= char <= "\udfff" else char
        for char in description
    )


# -- What to send ---------------------------------------------------------------------------------------

labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)


@st.composite
def browser_origins(draw: st.DrawFn) -> str:
    """An origin exactly as a browser sends it (RFC 6454): lower case, no default port, no path."""
    scheme = draw(st.sampled_from(["http", "https"]))
    port = draw(st.none() | st.integers(1, 65535).filter(lambda port: port not in (80, 443)))
    return f"{scheme}://{draw(hostnames)}" + ("" if port is None else f":{port}")


# Ports of more digits than Python's int() converts (4300), and of 6 up to that.
digits = st.builds(
    lambda count, digit: digit + "0" * (count - 1),
    st.integers(4_301, 12_000) | st.integers(6, 4_300),
    st.sampled_from("123456789"),
)
huge_ports = st.builds(
    lambda origin, port: f"{origin.rsplit(':', 1)[0] if origin.count(':') == 2 else origin}:{port}",
    browser_origins(),
    digits,
)
# Hosts of valid labels, longer than any origin (more than 300 characters in all).
long_hosts = st.builds(
    lambda scheme, label, count: f"{scheme}://" + (label + ".") * count + "example",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["a", "x" * 63]),
    st.integers(150, 1_500),
).filter(lambda origin: len(origin) > 300)
# An origin with control characters, spaces or bytes beyond ASCII inserted.
controls = st.builds(
    lambda origin, at, inserted: origin[:at] + inserted + origin[at:],
    browser_origins(),
    st.integers(0, 30),
    st.text(
        st.characters(codec="latin-1", categories=["Cc", "Zs"]) | st.characters(min_codepoint=0x80, max_codepoint=0xFF),
        min_size=1,
        max_size=4,
    ),
)
hostile_origins = (
    huge_ports.map(str.encode)
    | long_hosts.map(str.encode)
    | controls.map(lambda text: text.encode("latin-1"))
    | st.binary(max_size=40)
)


def as_a_server_passes(value: bytes) -> bytes:
    """A header value as h11 and httptools let it through: no CR, LF or NUL (RFC 9110 section 5.5)."""
    return value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip(b" \t")


# Any text, with lone surrogates and control characters far more often than `st.text()` gives them.
descriptions = st.text(
    st.characters(exclude_categories=[]) | st.characters(categories=["Cs"]) | st.characters(categories=["Cc"]),
    max_size=20,
)


# -- The stack under test: a reflecting timing_allow_origin, descriptions from the request --------------


def reflecting_stack(preset: str) -> App:
    async def describe(request: Request) -> Response:
        body = await request.body()
        text = json.loads(body)["d"] if body else request.headers.get("x-note", "")
        with timing(request, "block", text):
            pass
        record_timing(request, "note", 0.001, text)

        @timing(request, "call", text)
        def call() -> None:
            pass

        call()
        return PlainTextResponse("ok")

    app = App(routes=[Route("/", describe, methods=["GET", "POST"])])

    @app.middleware("http")
    async def decorated(request: Request, call_next: CallNext) -> Response:
        record_timing(request, "decorator", description=request.headers.get("x-note", ""))
        return await call_next(request)

    app.add_middleware(CORSMiddleware, preset=preset)
    app.add_middleware(TimingMiddleware, timing_allow_origin=lambda request: request.headers.get("origin"))
    return app


STACKS = {preset: reflecting_stack(preset) for preset in ("public", "development")}


async def call(app: ASGIApp, method: str, headers: Headers, body: bytes = b"") -> tuple[int, Headers]:
    """One request in process, with the scope uvicorn builds; an exception out of the app fails the test."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "state": {},
    }
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    with anyio.fail_after(5):  # a hang (a regex on a long origin, say) fails the example
        await app(scope, receive, send)
    starts = [message for message in messages if message["type"] == "http.response.start"]
    assert len(starts) == 1, messages
    return starts[0]["status"], list(starts[0]["headers"])


# -- Client input ---------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("preset", sorted(STACKS))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    sent=browser_origins().map(lambda origin: (origin.encode(), True))
    | hostile_origins.map(lambda origin: (as_a_server_passes(origin), False)),
    note=st.binary(max_size=12),
)
async def test_a_reflected_origin_never_fails_the_response(preset: str, sent: tuple[bytes, bool], note: bytes) -> None:
    origin, browser_origin = sent
    headers = [(b"origin", origin), (b"x-note", as_a_server_passes(note))]
    status, response_headers = await call(STACKS[preset], "GET", headers)

    metrics = check_response(status, response_headers)
    assert [name for name, _ in metrics][:1] == ["app"]
    allowed = [value for name, value in response_headers if name == b"timing-allow-origin"]
    event("reflected" if allowed else "left out")
    if browser_origin:
        assert allowed, origin
    for value in allowed:
        # Timing-Allow-Origin holds the Origin sent, and "*" from CORS's "public"; nothing else.
        assert set(value.split(b", ")) <= {origin, b"*"}, (value, origin)
        assert len(origin) <= MAX_ORIGIN or value == b"*"


@pytest.mark.anyio
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=descriptions)
async def test_any_description_from_the_request_reaches_the_header_safely(text: str) -> None:
    body = json.dumps({"d": text}).encode()  # ASCII: a lone surrogate as its \ud800 escape
    status, headers = await call(STACKS["public"], "POST", [(b"content-type", b"application/json")], body)

    metrics = check_response(status, headers)
    written = {name: params.get("desc") for name, params in metrics}
    # (as the endpoint reads it: JSON joins a high and a low surrogate escape into one character)
    expected = as_written(json.loads(body)["d"]) or None  # an empty description is left out
    assert written["block"] == written["note"] == written["call"] == expected, (text, metrics)


# The same through a real uvicorn, as raw bytes: what its parsing lets through reaches the stack.
@settings(max_examples=2 * settings().max_examples)
@given(origin=hostile_origins, text=descriptions)
def uvicorn_answers(base: str, origin: bytes, text: str) -> None:
    body = json.dumps({"d": text}).encode()
    request = b"\r\n".join(
        [
            b"POST / HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Origin: " + as_a_server_passes(origin),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
            b"",
            body,
        ]
    )
    response = exchange(base, request, timeout=10)
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    status = int(head[0].split()[1])
    event(f"status {status}")
    headers = [(name.lower(), value.strip()) for name, _, value in (line.partition(b":") for line in head[1:])]
    if status == 400 and b"x-process-time" not in dict(headers):  # uvicorn refused the bytes; the app never ran
        return
    metrics = check_response(status, headers)
    assert {name: params.get("desc") for name, params in metrics}["note"] == (as_written(json.loads(body)["d"]) or None)


def test_hostile_origins_and_descriptions_as_raw_bytes_under_uvicorn(mw_live_server: LiveServer) -> None:
    uvicorn_answers(mw_live_server(STACKS["development"]))


# -- Configuration --------------------------------------------------------------------------------------

tokens = st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=10)
# What X-Process-Time may not be called (README): framing headers and the timing ones.
RESERVED = ["Content-Length", "transfer-encoding", "Connection", "Server-Timing", "timing-allow-origin"]
names = tokens | st.sampled_from([*RESERVED, "X-Process-Time", "100%", "%s", "%%"]) | st.text(max_size=6)
not_strings = st.sampled_from([1, b"app", 2.5, ["app"]])
bad_origins = (
    browser_origins().map(lambda origin: origin + "/")
    | browser_origins().map(str.upper)
    | browser_origins().map(lambda origin: origin + "/path")
    | huge_ports
    | long_hosts
    | st.sampled_from(["null", "app.example.com", "http://a.example:80", "https://a.example:443", "http://a:0"])
)
# Origins for timing_allow_origin, each with whether the README takes it.
tagged_origins = (
    browser_origins().map(lambda origin: (origin, True))
    | st.just(("*", True))
    | bad_origins.map(lambda origin: (origin, False))
)
allow_origin_options = (
    st.none().map(lambda _: (None, True))
    | tagged_origins
    | st.lists(tagged_origins, max_size=3).map(
        lambda tagged: ([origin for origin, _ in tagged], bool(tagged) and all(good for _, good in tagged))
    )
    | not_strings.map(lambda value: (value, False))
)


def token(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(_TOKEN.decode(), value) is not None


def accepted(options: dict[str, Any], good_origins: bool) -> bool:
    """Whether the README's rules take these options."""
    header, metric, precision = options["process_time_header"], options["metric"], options["precision"]
    return (
        (header is None or (token(header) and header.lower() not in {name.lower() for name in RESERVED}))
        and (metric is None or token(metric))
        and (options["description"] is None or isinstance(options["description"], str))
        and type(precision) is int
        and 0 <= precision <= 6
        and (header is not None or options["server_timing"])
        and good_origins
    )


@st.composite
def timing_options(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """Options the README takes, with one of them drawn from anything in one case of three."""
    allow, good_origins = draw(allow_origin_options.filter(lambda tagged: tagged[1]))
    options = {
        "process_time_header": draw(st.none() | st.just("X-Process-Time") | tokens),
        "server_timing": draw(st.booleans()),
        "metric": draw(st.none() | tokens),
        "description": draw(st.none() | descriptions),
        "precision": draw(st.integers(0, 6)),
        "timing_allow_origin": allow,
    }
    anything = {
        "process_time_header": st.none() | names | not_strings,
        "metric": st.none() | names | not_strings,
        "description": st.none() | descriptions | not_strings,
        "precision": st.integers(-1, 7) | st.sampled_from([True, 2.0]),
    }
    changed = draw(st.sampled_from([None, None, *anything, "timing_allow_origin"]))
    if changed == "timing_allow_origin":
        options["timing_allow_origin"], good_origins = draw(allow_origin_options)
    elif changed is not None:
        options[changed] = draw(anything[changed])
    return options, good_origins


# A metric and its arguments as a handler passes them to timing() / record_timing().
metric_calls = st.tuples(
    names | not_strings,
    st.none() | st.floats(allow_nan=True) | st.integers(-1, 10**400) | st.sampled_from([10**5000, 1e306, True]),
    st.none() | descriptions | not_strings,
)


def call_accepted(name: object, seconds: object, description: object) -> bool:
    if not token(name) or not (description is None or isinstance(description, str)):
        return False
    if seconds is None:
        return True
    if type(seconds) not in (int, float):
        return False
    try:
        return 0 <= float(seconds) * 1000 < math.inf  # type: ignore[arg-type]
    except OverflowError:
        return False


@pytest.mark.anyio
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(configured=timing_options(), calls=st.lists(metric_calls, max_size=3))
async def test_options_are_refused_where_written_or_work_on_every_request(
    configured: tuple[dict[str, Any], bool], calls: list[tuple[Any, Any, Any]]
) -> None:
    options, good_origins = configured
    app = App()
    try:
        TimingMiddleware(app, **options)
    except (ValueError, TypeError) as error:
        assert not accepted(options, good_origins), (options, error)
        event("refused")
        return
    assert accepted(options, good_origins), options
    event("accepted")

    recorded: list[tuple[str, str | None]] = []

    async def handler(request: Request) -> Response:
        for name, seconds, description in calls:
            try:
                if seconds is None:
                    with timing(request, name, description):
                        pass
                else:
                    record_timing(request, name, seconds, description)
            except (ValueError, TypeError):
                assert not call_accepted(name, seconds, description), (name, seconds, description)
            else:
                assert call_accepted(name, seconds, description), (name, seconds, description)
                recorded.append((name, as_written(description) if description else None))
        return PlainTextResponse("ok")

    app = App(routes=[Route("/", handler)])
    app.add_middleware(TimingMiddleware, **options)
    for _ in range(2):  # every request, not only the first
        recorded.clear()
        status, headers = await call(app, "GET", [(b"origin", b"https://app.example.com")])
        metrics = check_response(status, headers)
        total = [] if options["metric"] is None else [(options["metric"], options["description"] or None)]
        expected = [(name, None if desc is None else as_written(desc)) for name, desc in [*total, *recorded]]
        if not options["server_timing"]:
            expected = []
        assert [(name, params.get("desc")) for name, params in metrics] == expected
        header = options["process_time_header"]
        if header is not None:
            [seconds] = [value for name, value in headers if name == header.lower().encode()]
            assert NUMBER.fullmatch(seconds)


def test_record_timing_checks_its_name_without_the_middleware_too() -> None:
    # README: a mistake shows wherever the code runs, not only where TimingMiddleware is on.
    scope: Scope = {"type": "http"}
    with pytest.raises(ValueError, match="is not an HTTP token"):
        record_timing(scope, "bad name")
    with pytest.raises(ValueError, match="is not an HTTP token"):
        timing(scope, "bad name")


# -- The error layer ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_timing_allow_origin_function_that_raises_runs_once_and_the_500_goes_out() -> None:
    called: list[str] = []

    def broken(request: Request) -> str:
        called.append(request.url.path)
        raise LookupError("no such tenant")

    app = App(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    app.add_middleware(CORSMiddleware, preset="public")
    app.add_middleware(TimingMiddleware, timing_allow_origin=broken)
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"origin", b"https://a.example")],
    }
    with pytest.raises(LookupError, match="no such tenant"):  # ServerErrorMiddleware re-raises for the server's log
        await app(scope, receive, send)

    assert called == ["/"]
    start = messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 500
    headers = dict(start["headers"])
    assert headers[b"access-control-allow-origin"] == b"*"  # CORS's headers still go on it
    assert b"timing-allow-origin" not in headers
    assert messages[-1]["body"] == b"Internal Server Error"


class Failing:
    """A middleware whose headers on the error response fail: the 500 goes out without them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:

            def failing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
                raise RuntimeError("cannot add headers")

            wrap_error_response(scope, failing, self, warn=True)
            raise


@pytest.mark.anyio
async def test_an_edit_that_raises_on_the_500_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def boom(request: Request) -> Response:
        raise KeyError("endpoint")

    app = App(routes=[Route("/", boom)])
    app.add_middleware(Failing)
    app.add_middleware(TimingMiddleware, timing_allow_origin="*")
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"", "headers": []}
    with caplog.at_level(logging.ERROR, logger="starlette_mw"), pytest.raises(KeyError, match="endpoint"):
        await app(scope, receive, send)

    assert messages[0]["status"] == 500
    assert dict(messages[0]["headers"])[b"timing-allow-origin"] == b"*"  # Timing's, outside the failing one
    assert "Failing raised while adding its headers to the error response" in caplog.text
    assert "cannot add headers" in caplog.text
