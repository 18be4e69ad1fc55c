"""Fuzz: arbitrary paths, hosts, origins and header bytes through the whole stack.

Timing, CORS with a preset, redirects (path, regex, host and scheme rules, trailing slash) and a
decorator middleware, outermost first, in front of routes that include a streaming one. Never a 500 (but where an
endpoint raises on purpose), never a hang, never an exception out of the stack, never a Location
that leaves the configured hosts, never CR, LF or NUL in a response header; exactly one response
start. In-process with scopes built as uvicorn's h11 protocol builds them, then a smaller run of
raw requests to a real uvicorn for what its parsing changes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message
from wire import exchange

from starlette_mw import App, CORSMiddleware, Redirect, RedirectMiddleware, TimingMiddleware, record_timing

HOSTS = {"example.com", "www.example.com", "shop.example.net"}
FRONT_END = "https://app.example.com"


class Boom(Exception):
    """What the /boom endpoint raises on purpose."""


async def home(request: Request) -> Response:
    return PlainTextResponse("home")


async def item(request: Request) -> Response:
    return PlainTextResponse(f"item {request.path_params['id']}")


async def echo(request: Request) -> Response:
    # Not request.url: Starlette decodes the query string as UTF-8, and the in-process fuzz sends
    # bytes that no HTTP/1.1 server passes on (h11 allows printable ASCII only in a request target).
    return PlainTextResponse(f"{request.scope['path']!r} {request.scope['query_string']!r}")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one ", b"two ", b"three"):
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise Boom("on purpose")


def make_stack(preset: str) -> App:
    app = App(
        routes=[
            Route("/", home),
            Route("/items/{id:int}", item, methods=["GET", "PUT", "DELETE"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
            Route("/stream", stream),
            Route("/boom", boom),
        ]
    )

    @app.middleware("http")
    async def describe_path(request: Request, call_next: Callable[[Request], object]) -> Response:
        # The request's own text in a Server-Timing description: TimingMiddleware must escape it.
        record_timing(
            request, "path", description=request.scope["path"] + '"\\\r\n' + request.headers.get("x-note", "")
        )
        response: Response = await call_next(request)  # type: ignore[misc]
        response.headers["x-decorated"] = "1"
        return response

    app.add_middleware(
        RedirectMiddleware,
        rules=[
            Redirect.scheme("https"),
            Redirect.host("www.example.com", "example.com"),
            Redirect("/old", "/echo/new"),
            Redirect("/go/{rest:path}", "/{rest}"),
            Redirect("/docs/{rest:path}", "/echo/manual/{rest}", status=302),
            Redirect(re.compile(r"/u/(?P<id>[^/]*)"), "/items/{id}?from={?from=u}"),
            Redirect("/shop/{rest:path}", "https://shop.example.net/{rest}"),
            Redirect("/gone", status=410),
            Redirect("/{page}", "/echo/archive/{page}", if_not_found=True),
        ],
        hosts=["example.com"],
        trailing_slash="strip",
    )
    # CORS outside the redirects, so that they carry its headers (README: With CORS).
    cors: dict[str, Any] = {"allow_origins": [FRONT_END]} if preset == "first-party" else {}
    app.add_middleware(CORSMiddleware, preset=preset, **cors)
    app.add_middleware(TimingMiddleware, timing_allow_origin=FRONT_END)
    return app


STACKS = {preset: make_stack(preset) for preset in ("first-party", "public")}

# -- What to send --------------------------------------------------------------------------------------

PIECES = [
    b"/", b"//", b"\\", b"%2F", b"%2f", b"%5C", b"%00", b"%0D%0A", b"%0a", b"%09", b"%20", b"%FF", b"%E2%80%AE",
    b"%", b"%%", b"%G1", b"?", b"#", b"go", b"docs", b"old", b"u", b"shop", b"gone", b"boom", b"stream", b"items",
    b"echo", b"123", b".", b"..", b"evil.example", b"@", b"http:", b"\t", b"\x00", b"\x7f", b"\xff", b"\xc3\xa9",
]  # fmt: skip
ROUTED = [b"/", b"/boom", b"/stream", b"/items/12", b"/echo/a%2Fb?q=1", b"/old", b"/u/7", b"/gone", b"/docs/x", b"/x"]
targets = st.sampled_from(ROUTED) | st.builds(
    lambda start, pieces: start + b"".join(pieces),
    # Targets that do not start with '/' too ('*' reaches the app so under uvicorn).
    st.sampled_from([b"/", b"//", b"/\\", b"*", b".evil.example", b"http://evil.example", *ROUTED]),
    st.lists(st.sampled_from(PIECES) | st.binary(min_size=1, max_size=3), max_size=8),
)
hosts = st.sampled_from(
    [b"example.com", b"www.example.com", b"shop.example.net", b"evil.example", b"example.com:8443",
     b"WWW.EXAMPLE.COM.", b"example.com@evil.example", b"[::1]:80", b"example.com:99999", b""]
) | st.binary(max_size=12)  # fmt: skip
origins = st.sampled_from([FRONT_END.encode(), b"https://evil.example", b"null", b"http://localhost:3000"]) | st.binary(
    max_size=12
)
header_names = st.sampled_from(
    [b"access-control-request-method", b"access-control-request-headers", b"x-note", b"vary", b"cookie"]
) | st.binary(min_size=1, max_size=6).map(bytes.lower)


def as_a_server_passes(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A header as h11 and httptools let it through: a token for a name, no CR, LF or NUL in the value
    (RFC 9110 section 5.5); any other byte stays."""
    token = re.sub(rb"[^!#$%&'*+\-.^_`|~0-9a-z]", b"", name) or b"x"
    return token, value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, list[tuple[bytes, bytes]]]:
    """(method, scheme, request target, headers)."""
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 2))):  # none, one, or two Host headers
        headers.append((b"host", draw(hosts)))
    if draw(st.booleans()):
        headers.append((b"origin", draw(origins)))
    for name, value in draw(st.lists(st.tuples(header_names, st.binary(max_size=16)), max_size=3)):
        headers.append((name, value))
    headers = [as_a_server_passes(name, value) for name, value in headers]
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE"]))
    return method, draw(st.sampled_from(["https", "https", "http"])), draw(targets), headers


# -- What must hold ------------------------------------------------------------------------------------

SAFE_RELATIVE = re.compile(r"/(?:[^/\\\x00-\x20\x7f-\U0010ffff][!-~]*)?")


def check_location(location: str) -> None:
    if location.startswith("/"):
        # One '/', then neither '/' nor '\'; printable ASCII only (no control character, no space).
        assert SAFE_RELATIVE.fullmatch(location), location
    else:
        assert re.fullmatch(r"[!-~]+", location), location
        url = urlsplit(location)
        assert url.scheme in ("http", "https") and url.hostname in HOSTS and "@" not in url.netloc, location


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        for forbidden in (b"\r", b"\n", b"\x00"):
            assert forbidden not in name and forbidden not in value, (name, value)


def scope_for(method: str, scheme: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    """The scope uvicorn's h11 protocol builds (uvicorn/protocols/http/h11_impl.py), with latin-1 where it
    would refuse non-ASCII bytes, so that such paths reach the app too."""
    raw_path, _, query_string = target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": scheme,
        "method": method,
        "root_path": "",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query_string,
        "headers": headers,
        "state": {},
    }


@pytest.mark.anyio
@pytest.mark.parametrize("preset", sorted(STACKS))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
async def test_the_stack_survives_arbitrary_requests_in_process(
    preset: str, request: tuple[str, str, bytes, list[tuple[bytes, bytes]]]
) -> None:
    method, scheme, target, headers = request
    scope = scope_for(method, scheme, target, headers)
    messages: list[Message] = []
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"x=1", "more_body": False}
        await anyio.sleep_forever()  # a client that keeps the connection open
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        messages.append(message)

    raised: BaseException | None = None
    with anyio.fail_after(5):  # a hang fails the example
        try:
            await STACKS[preset](scope, receive, send)
        except Boom as error:
            raised = error

    starts = [message for message in messages if message["type"] == "http.response.start"]
    assert len(starts) == 1 and messages[0] is starts[0], messages
    assert messages[-1]["type"] == "http.response.body" and not messages[-1].get("more_body", False)
    status, response_headers = starts[0]["status"], starts[0]["headers"]
    event(f"status {status}")
    if raised is not None:
        assert (status, scope["path"]) == (500, "/boom")
    else:
        assert status != 500, (scope, messages)
    check_headers(response_headers)
    locations = [value.decode("latin-1") for name, value in response_headers if name == b"location"]
    assert len(locations) <= 1
    for location in locations:
        check_location(location)


# -- The same under a real uvicorn ---------------------------------------------------------------------


# A few hundred raw requests by default: each is a new connection, and cheap.
@settings(max_examples=3 * settings().max_examples)
@given(request=requests(), escape=st.booleans())
def uvicorn_survives(base: str, request: tuple[str, str, bytes, list[tuple[bytes, bytes]]], escape: bool) -> None:
    method, _, target, headers = request
    if escape:  # h11 refuses any byte but printable ASCII in a request target: send the rest as %XX
        target = re.sub(rb"[^!-~]", lambda byte: b"%%%02X" % byte[0][0], target)
    lines = [method.encode() + b" " + target + b" HTTP/1.1", *(name + b": " + value for name, value in headers)]
    response = exchange(base, b"\r\n".join([*lines, b"Connection: close", b"", b""]), timeout=5)
    if not response:  # uvicorn closed the connection without answering a request it could not parse
        event("no response")
        return
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    status = int(head[0].split()[1])
    event(f"status {status}")
    response_headers = [tuple(line.split(b":", 1)) for line in head[1:]]
    assert all(len(header) == 2 for header in response_headers), head
    if status == 500:
        assert unquote(target.partition(b"?")[0].decode("latin-1")) == "/boom", (target, head)
    for name, value in response_headers:
        assert b"\x00" not in name + value, head
        if name.lower() == b"location":
            check_location(value.strip().decode("latin-1"))


def test_the_stack_survives_arbitrary_requests_under_uvicorn(mw_live_server: Callable[..., str]) -> None:
    base = mw_live_server(STACKS["first-party"])
    uvicorn_survives(base)


# -- Targets that are not a path ----------------------------------------------------------------------
# Joined to a configured origin by a scheme or host rule, they once named another site
# ('https://example.com' + '.evil.example/x'); now they pass on unchanged.


@pytest.mark.anyio
@pytest.mark.parametrize("target", [b"*", b".evil.example/x", b"http://evil.example/"])
async def test_a_path_without_a_leading_slash_never_leaves_the_site_in_process(target: bytes) -> None:
    app = RedirectMiddleware(PlainTextResponse("home"), rules=[Redirect.scheme("https")], hosts=["example.com"])
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope_for("OPTIONS", "http", target, [(b"host", b"example.com")]), receive, send)

    assert messages[0]["status"] == 200  # passed on to the app
    for name, value in messages[0]["headers"]:
        if name == b"location":
            check_location(value.decode("latin-1"))


def test_an_asterisk_request_never_leaves_the_site_under_uvicorn(mw_live_server: Callable[..., str]) -> None:
    base = mw_live_server(
        RedirectMiddleware(PlainTextResponse("home"), rules=[Redirect.scheme("https")], hosts=["example.com"])
    )

    response = exchange(base, b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", timeout=5)

    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"  # uvicorn passes 'OPTIONS *' on as path '*'; so does the middleware
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"location":
            check_location(value.strip().decode("latin-1"))
