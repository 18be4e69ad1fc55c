"""`trace(app)` / the `mw_trace` fixture: the real order of every kind of middleware layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw import App, CallNext, TimingMiddleware
from starlette_mw.testing import preflight
from starlette_mw.testing.tracing import Trace, trace

ORIGIN = "https://app.example.com"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def boom(request: Request) -> Response:
    raise RuntimeError("endpoint failed")


class Legacy(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        return await call_next(request)


class PlainASGI:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def test_every_kind_of_layer_in_registration_order(
    mw_client: Callable[..., Any], mw_trace: Callable[[Starlette], Trace]
) -> None:
    app = App(routes=[Route("/", hello)], middleware=[Middleware(PlainASGI), Middleware(Legacy)])
    app.add_middleware(GZipMiddleware)

    @app.middleware("http")
    async def process_time(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    app.add_middleware(TimingMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN])
    recorded = mw_trace(app)
    client = mw_client(app)
    assert client.get("/").text == "hello"
    # The last registered is the outermost, whatever its kind (not "classes before functions").
    inward = ["CORSMiddleware", "TimingMiddleware", "process_time", "GZipMiddleware", "PlainASGI", "Legacy"]
    assert recorded.last == [*inward, "endpoint", *reversed(inward)]
    assert len(recorded.requests) == 1


def test_a_layer_that_answers_by_itself_and_one_that_raises(
    mw_client: Callable[..., Any], mw_trace: Callable[[Starlette], Trace]
) -> None:
    app = App(
        routes=[Route("/", hello), Route("/boom", boom)],
        middleware=[Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["PUT"]), Middleware(Legacy)],
    )
    recorded = mw_trace(app)
    client = mw_client(app, raise_server_exceptions=False)
    preflight(client, "/", origin=ORIGIN, method="PUT")
    assert recorded.last == ["CORSMiddleware", "CORSMiddleware"]
    assert client.get("/boom").status_code == 500
    # No response left either layer: ServerErrorMiddleware, outside them, sent the 500.
    assert recorded.last == ["CORSMiddleware", "Legacy", "endpoint"]
    assert len(recorded.requests) == 2
    recorded.clear()
    with pytest.raises(LookupError, match="has not seen an HTTP request yet"):
        recorded.last  # noqa: B018


def test_an_app_without_middleware_and_fastapi(
    mw_client: Callable[..., Any], mw_trace: Callable[[Starlette], Trace]
) -> None:
    bare = Starlette(routes=[Route("/", hello)])
    recorded = mw_trace(bare)
    mw_client(bare).get("/")
    assert recorded.last == ["endpoint"]

    api = FastAPI()
    api.add_api_route("/", hello)

    @api.middleware("http")
    async def fastapi_decorated(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    api.add_middleware(TimingMiddleware)
    recorded = mw_trace(api)
    mw_client(api).get("/")
    assert recorded.last == [
        "TimingMiddleware",
        "fastapi_decorated",
        "endpoint",
        "fastapi_decorated",
        "TimingMiddleware",
    ]


@pytest.mark.anyio
async def test_concurrent_requests_are_recorded_apart() -> None:
    async def slow(request: Request) -> Response:
        await anyio.sleep(0.01)
        return PlainTextResponse("slow")

    app = App(routes=[Route("/", slow)], middleware=[Middleware(TimingMiddleware), Middleware(Legacy)])
    recorded = trace(app)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        anyio.create_task_group() as tasks,
    ):
        for _ in range(5):
            tasks.start_soon(http.get, "/")
    expected = ["TimingMiddleware", "Legacy", "endpoint", "Legacy", "TimingMiddleware"]
    assert recorded.requests == [expected] * 5


def test_trace_before_the_first_request_only() -> None:
    app = Starlette()
    app.middleware_stack = app.build_middleware_stack()
    with pytest.raises(RuntimeError, match=r"trace\(\) was called after the app built its middleware stack"):
        trace(app)
    with pytest.raises(TypeError, match=r"trace\(\) takes a Starlette or FastAPI app, not function"):
        trace(hello)  # type: ignore[arg-type]


def test_the_registered_list_is_left_as_it_was(mw_client: Callable[..., Any]) -> None:
    app = App(routes=[Route("/", hello)], middleware=[Middleware(GZipMiddleware)])
    before = list(app.user_middleware)
    trace(app)
    mw_client(app).get("/")
    assert app.user_middleware == before


def test_a_traced_app_mounted_in_a_traced_app_records_apart(mw_client: Callable[..., Any]) -> None:
    from starlette.routing import Mount

    inner = App(routes=[Route("/x", hello)], middleware=[Middleware(TimingMiddleware)])
    outer = App(routes=[Mount("/sub", app=inner)], middleware=[Middleware(Legacy)])
    inner_trace, outer_trace = trace(inner), trace(outer)
    mw_client(outer).get("/sub/x")
    assert outer_trace.requests == [["Legacy", "endpoint", "Legacy"]]
    assert inner_trace.requests == [["TimingMiddleware", "endpoint", "TimingMiddleware"]]


def test_describe_does_not_list_the_recorders() -> None:
    from starlette_mw import describe

    app = App(routes=[Route("/", hello)], middleware=[Middleware(TimingMiddleware), Middleware(Legacy)])
    before = describe(app)
    trace(app)
    assert describe(app) == before
