"""`install(app)` and the layer it adds: middleware headers on the 500 that Starlette renders."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

import starlette_mw
from starlette_mw import App, MiddlewareMixin, TimingMiddleware, describe


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def boom(request: Request) -> Response:
    raise RuntimeError("endpoint failed")


async def get_500(app: ASGIApp, path: str = "/boom") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get(path)
    assert response.status_code == 500
    return response


def test_install_returns_the_app_and_adds_one_layer_outside_server_error_middleware() -> None:
    app = Starlette(routes=[Route("/", hello)])
    assert starlette_mw.install(app) is app
    assert starlette_mw.install(app) is app  # a second call changes nothing
    assert describe(app).layers == ("ErrorResponseLayer", "ServerErrorMiddleware", "ExceptionMiddleware", "Router")


def test_app_and_the_mixin_have_the_layer_without_install() -> None:
    class MixedFastAPI(MiddlewareMixin, FastAPI):
        pass

    for app in (App(), MixedFastAPI()):
        assert starlette_mw.install(app) is app
        layers = describe(app).layers
        assert layers[:2] == ("ErrorResponseLayer", "ServerErrorMiddleware")
        assert layers.count("ErrorResponseLayer") == 1


def test_install_on_fastapi_keeps_fastapis_own_stack() -> None:
    app = FastAPI()
    before = describe(app).layers
    starlette_mw.install(app)
    assert describe(app).layers == ("ErrorResponseLayer", *before)


def test_install_after_the_app_started_is_refused() -> None:
    app = Starlette(routes=[Route("/", hello)])
    app.middleware_stack = app.build_middleware_stack()  # what the first request does
    with pytest.raises(RuntimeError, match=r"after the app built its middleware stack.*right after creating"):
        starlette_mw.install(app)


def test_install_takes_an_app() -> None:
    with pytest.raises(TypeError, match=r"install\(\) takes a Starlette or FastAPI app, not function"):
        starlette_mw.install(hello)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_app_without_errors_is_unchanged() -> None:
    app = starlette_mw.install(Starlette(routes=[Route("/", hello)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/")
    assert response.text == "hello"
    assert [name for name, _ in response.headers.raw] == [b"content-length", b"content-type"]


@pytest.mark.anyio
async def test_each_middleware_the_error_went_through_edits_the_500_innermost_first() -> None:
    app = App(
        routes=[Route("/boom", boom)],
        middleware=[
            Middleware(TimingMiddleware, process_time_header="X-Outer", server_timing=False),
            Middleware(TimingMiddleware, process_time_header="X-Inner", server_timing=False),
        ],
    )
    response = await get_500(app)
    added = [name for name, _ in response.headers.raw if name.startswith(b"x-")]
    # As on any other response: the inner middleware's send wrapper runs first.
    assert added == [b"x-inner", b"x-outer"]


@pytest.mark.anyio
async def test_a_middleware_the_error_did_not_go_through_adds_nothing() -> None:
    app = App(
        routes=[Route("/boom", boom), Route("/", hello)],
        middleware=[Middleware(TimingMiddleware, include="/")],
    )
    response = await get_500(app)
    assert "x-process-time" not in response.headers


@pytest.mark.anyio
async def test_a_mounted_app_errors_reach_the_outer_layer() -> None:
    inner = Starlette(routes=[Route("/boom", boom)], middleware=[Middleware(TimingMiddleware)])
    outer = App(routes=[Mount("/sub", app=inner)])
    # The inner app's own ServerErrorMiddleware renders the 500; the outer app's layer edits it.
    response = await get_500(outer, "/sub/boom")
    assert "x-process-time" in response.headers
