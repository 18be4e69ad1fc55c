"""`starlette_mw.testing` and the plugin's clients and server: what passes, what fails, and how it says so."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from starlette_mw.testing import (
    Metric,
    assert_cors,
    assert_redirect,
    assert_server_timing,
    preflight,
    preflight_headers,
    server_timing,
)

ORIGIN = "https://app.example.com"


def response(status: int = 200, headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or [])


def test_server_timing_parses_the_whole_grammar() -> None:
    timed = response(
        headers=[
            ("Server-Timing", 'db;dur=12.5;desc="query \\"users\\"", cache;desc=hit, miss'),
            ("Server-Timing", 'total ; dur = 20 ; DESC="all";dur=99, app;dur=1;desc="a, b; c"'),
        ]
    )
    assert server_timing(timed) == [
        Metric("db", 12.5, 'query "users"'),
        Metric("cache", None, "hit"),
        Metric("miss"),
        Metric("total", 20.0, "all"),  # spaces around ';' and '=' are allowed; the first dur wins
        Metric("app", 1.0, "a, b; c"),
    ]
    assert server_timing(response()) == []
    with pytest.raises(AssertionError, match=r"cannot be parsed at"):
        server_timing(response(headers=[("Server-Timing", 'db;desc="unterminated')]))


def test_assert_server_timing() -> None:
    timed = response(headers=[("Server-Timing", 'app;dur=3, db;dur=1;desc="q"')])
    assert assert_server_timing(timed, "app", "db", descriptions={"db": "q"})[1].duration == 1.0
    with pytest.raises(AssertionError, match=r"Expected Server-Timing metrics \['db'\], got \['app', 'db'\]"):
        assert_server_timing(timed, "db")
    with pytest.raises(AssertionError, match=r"metric 'db' with description 'x', got \['q'\]"):
        assert_server_timing(timed, "app", "db", descriptions={"db": "x"})


def test_assert_redirect() -> None:
    moved = response(308, [("Location", "/new")])
    assert_redirect(moved, "/new")
    assert_redirect(moved, "/new", status=308)
    with pytest.raises(AssertionError, match=r"with status 301; got status 308 with Location '/new'"):
        assert_redirect(moved, "/new", status=301)
    with pytest.raises(AssertionError, match=r"redirect status .*; got status 200 with Location None"):
        assert_redirect(response(), "/new")
    with pytest.raises(AssertionError, match=r"got status 302 with Location \['/a', '/b'\]"):
        assert_redirect(response(302, [("Location", "/a"), ("Location", "/b")]), "/a")


def test_assert_cors() -> None:
    allowed = response(
        headers=[
            ("Access-Control-Allow-Origin", ORIGIN),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "Server-Timing, X-Process-Time"),
            ("Vary", "Accept-Encoding, Origin"),
        ]
    )
    assert_cors(allowed, ORIGIN, credentials=True, expose=["x-process-time", "Server-Timing"], vary=True)
    problems = (
        r"CORS headers: expected no Access-Control-Allow-Origin, got \['https://app.example.com'\]; "
        r"expected credentials not allowed, got Access-Control-Allow-Credentials \['true'\]; "
        r"expected Access-Control-Expose-Headers to name \['X-Other'\], got \['server-timing', 'x-process-time'\]; "
        r"expected Vary without Origin, got \['Accept-Encoding, Origin'\]\."
    )
    with pytest.raises(AssertionError, match=problems):
        assert_cors(allowed, None, credentials=False, expose=["X-Other"], vary=False)
    blocked = response(headers=[("Vary", "Origin")])
    assert_cors(blocked, None, credentials=False, vary=True)
    with pytest.raises(AssertionError, match=r"expected Access-Control-Allow-Origin '\*', got None"):
        assert_cors(blocked, "*")


def test_preflight_against_starlettes_cors(mw_client: Callable[..., Any]) -> None:
    app = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("hi"))],
        middleware=[Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["PUT"], allow_headers=["X-Key"])],
    )
    client = mw_client(app)
    assert preflight_headers(ORIGIN, "PUT", ["X-Key", "Content-Type"]) == {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-key, content-type",
    }
    ok = preflight(client, "/", origin=ORIGIN, method="PUT", headers=["X-Key"])
    assert ok.status_code == 200
    assert_cors(ok, ORIGIN)
    refused = preflight(client, "/", origin=ORIGIN, method="DELETE")
    assert refused.status_code == 400


@contextlib.asynccontextmanager
async def greeting(app: Starlette) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "hello"}


async def greet(request: Request) -> Response:
    return PlainTextResponse(request.state.greeting)


@pytest.mark.anyio
async def test_async_client_runs_the_lifespan_and_keeps_redirects(mw_async_client: Callable[..., Any]) -> None:
    shut_down: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        yield {"greeting": "hello"}
        shut_down.append(True)

    app = Starlette(routes=[Route("/", greet), Route("/old", lambda request: RedirectResponse("/"))], lifespan=lifespan)
    async with mw_async_client(app) as http:
        assert (await http.get("/")).text == "hello"
        assert_redirect(await http.get("/old"), "/", status=307)
        assert not shut_down
    assert shut_down == [True]


@pytest.mark.anyio
async def test_async_client_with_an_app_that_has_no_lifespan(mw_async_client: Callable[..., Any]) -> None:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only HTTP here")
        await PlainTextResponse("plain")(scope, receive, send)

    async with mw_async_client(plain) as http:
        assert (await http.get("/")).text == "plain"


@pytest.mark.anyio
async def test_async_client_reports_a_failed_startup_and_the_tests_own_errors_as_they_are(
    mw_async_client: Callable[..., Any],
) -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionError("no database")
        yield

    with pytest.raises(RuntimeError, match=r"(?s)The app's lifespan startup failed: .*ConnectionError: no database"):
        async with mw_async_client(Starlette(lifespan=broken)):
            pass
    # A failed assertion in the block is an AssertionError, not an ExceptionGroup around one.
    with pytest.raises(AssertionError, match="the test's own"):
        async with mw_async_client(Starlette(lifespan=greeting)):
            raise AssertionError("the test's own")


def test_live_server_serves_runs_the_lifespan_and_reports_a_failed_start(mw_live_server: Callable[..., str]) -> None:
    base_url = mw_live_server(Starlette(routes=[Route("/", greet)], lifespan=greeting))
    assert httpx.get(base_url + "/").text == "hello"

    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionError("no database")
        yield

    with pytest.raises(RuntimeError, match=r"uvicorn did not start .* on http://127\.0\.0\.1:\d+: it exited before"):
        mw_live_server(Starlette(lifespan=broken))


def test_assert_cors_checks_a_preflight_as_the_browser_does(mw_client: Callable[..., Any]) -> None:
    app = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("hi"))],
        middleware=[Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET"], allow_credentials=True)],
    )
    client = mw_client(app)
    refused = preflight(client, "/", origin=ORIGIN, method="DELETE", headers=["X-Key"])
    # Starlette echoes the allowed origin even on the 400: the origin alone proves nothing.
    assert_cors(refused, ORIGIN)
    problems = (
        r"expected a 2xx status for the preflight, got 400; "
        r"expected Access-Control-Allow-Methods to name 'DELETE', got \['get'\]; "
        r"expected Access-Control-Allow-Headers to name \['X-Key'\], got \['accept', "
    )
    with pytest.raises(AssertionError, match=problems):
        assert_cors(refused, ORIGIN, method="DELETE", request_headers=["X-Key"])
    assert_cors(preflight(client, "/", origin=ORIGIN, method="GET"), ORIGIN, credentials=True, method="GET")


def test_a_wildcard_counts_only_without_credentials() -> None:
    headers = [("Access-Control-Allow-Origin", ORIGIN), ("Access-Control-Expose-Headers", "*")]
    assert_cors(response(headers=headers), ORIGIN, expose=["X-Custom"])
    with pytest.raises(AssertionError, match=r"expected Access-Control-Expose-Headers to name \['X-Custom'\]"):
        assert_cors(
            response(headers=[*headers, ("Access-Control-Allow-Credentials", "true")]), ORIGIN, expose=["X-Custom"]
        )


@pytest.mark.anyio
async def test_async_client_with_an_app_that_returns_from_its_lifespan(mw_async_client: Callable[..., Any]) -> None:
    async def returns(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # uvicorn goes on without a lifespan; so must the client
        await PlainTextResponse("plain")(scope, receive, send)

    async def returns_after_startup(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            return
        await PlainTextResponse("started")(scope, receive, send)

    with anyio.fail_after(10):
        async with mw_async_client(returns) as http:
            assert (await http.get("/")).text == "plain"
        async with mw_async_client(returns_after_startup) as http:
            assert (await http.get("/")).text == "started"


def test_live_server_refuses_an_address_of_its_own(mw_live_server: Callable[..., str]) -> None:
    with pytest.raises(TypeError, match=r"LiveServer chooses where uvicorn listens .*drop host=, port="):
        mw_live_server(Starlette(), host="0.0.0.0", port=8123)
