"""`install(app)` and the layer it adds: middleware headers on the 500 that Starlette renders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

import starlette_mw
from starlette_mw import App, CORSMiddleware, MiddlewareMixin, TimingMiddleware, describe

ORIGIN = "https://app.example.com"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def boom(request: Request) -> Response:
    raise RuntimeError("endpoint failed")


async def get_500(app: ASGIApp, path: str = "/boom", headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == 500
    return response


def test_install_returns_the_app_and_puts_its_error_layer_in_place_of_server_error_middleware() -> None:
    app = Starlette(routes=[Route("/", hello)])
    assert starlette_mw.install(app) is app
    assert starlette_mw.install(app) is app  # a second call changes nothing
    assert describe(app).layers == ("ErrorResponseMiddleware", "ExceptionMiddleware", "Router")


def test_app_and_the_mixin_have_the_layer_without_install() -> None:
    class MixedFastAPI(MiddlewareMixin, FastAPI):
        pass

    for app in (App(), MixedFastAPI()):
        assert starlette_mw.install(app) is app
        layers = describe(app).layers
        assert layers[0] == "ErrorResponseMiddleware"
        assert "ServerErrorMiddleware" not in layers  # in its place, not around it


def test_install_on_fastapi_keeps_fastapis_own_stack() -> None:
    app = FastAPI()
    before = describe(app).layers
    starlette_mw.install(app)
    assert before[0] == "ServerErrorMiddleware"
    assert describe(app).layers == ("ErrorResponseMiddleware", *before[1:])


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


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["default", "async handler", "sync handler", "debug"])
async def test_the_error_layer_renders_the_500_as_starlettes_own_does(kind: str) -> None:
    """The reference is Starlette's ServerErrorMiddleware, in the same app built as a plain Starlette."""

    async def async_handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"async handler: {exc}", status_code=500)

    def sync_handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"sync handler: {exc}", status_code=500)

    handlers = {"async handler": {500: async_handler}, "sync handler": {Exception: sync_handler}}.get(kind, {})

    def build(cls: type[Starlette]) -> Starlette:
        return cls(
            routes=[Route("/boom", boom)],
            middleware=[Middleware(TimingMiddleware)],
            exception_handlers=handlers,  # type: ignore[arg-type]
            debug=kind == "debug",
        )

    reference, ours = await get_500(build(Starlette)), await get_500(build(App))
    assert ours.headers["content-type"] == reference.headers["content-type"]
    if kind == "debug":  # the traceback page: its frames differ, the error it shows does not
        assert "RuntimeError" in ours.text and "endpoint failed" in ours.text
    else:
        assert ours.text == reference.text
    assert "x-process-time" in ours.headers and "x-process-time" not in reference.headers


@pytest.mark.anyio
async def test_an_app_mounted_in_an_app_gets_the_headers_of_both_on_its_500() -> None:
    def timing(name: str) -> Middleware:
        return Middleware(TimingMiddleware, process_time_header=name, server_timing=False)

    inner = App(routes=[Route("/boom", boom)], middleware=[timing("X-Inner")])
    outer = App(routes=[Mount("/sub", app=inner)], middleware=[timing("X-Outer")])
    response = await get_500(outer, "/sub/boom")
    # The inner app's 500 passes the outer middleware on its way out; the outer error layer adds the
    # edits the inner middleware registered.
    assert [name for name, _ in response.headers.raw if name.startswith(b"x-")] == [b"x-outer", b"x-inner"]


def test_a_stack_that_does_not_start_with_server_error_middleware_is_left_as_it_is() -> None:
    class Wrapped(Starlette):
        def build_middleware_stack(self) -> ASGIApp:
            return GZipMiddleware(super().build_middleware_stack())

    app = starlette_mw.install(Wrapped(routes=[Route("/", hello)]))
    assert describe(app).layers[:2] == ("GZipMiddleware", "ServerErrorMiddleware")


@pytest.mark.anyio
async def test_a_response_sent_twice_gets_the_headers_once_each_time() -> None:
    """The layers edit the start message in place, but never the app's own header list."""
    cached = PlainTextResponse("cached", headers={"Vary": "Accept-Encoding"})

    async def reused(request: Request) -> Response:
        return cached

    app = App(
        routes=[Route("/", reused)],
        middleware=[
            Middleware(CORSMiddleware, preset="strict", allow_origins=[ORIGIN]),
            Middleware(TimingMiddleware),
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for _ in range(2):
            response = await http.get("/", headers={"Origin": ORIGIN})
            names = [name for name, _ in response.headers.raw]
            assert names.count(b"x-process-time") == names.count(b"server-timing") == 1
            assert response.headers.get_list("vary") == ["Accept-Encoding, Origin"]
    assert [name for name, _ in cached.raw_headers] == [b"vary", b"content-length", b"content-type"]


async def fails_before_its_first_chunk(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        raise RuntimeError("failed before the first chunk")
        yield b""

    return StreamingResponse(body())


def route() -> list[BaseRoute]:
    return [Route("/", fails_before_its_first_chunk)]


def mounted_app() -> list[BaseRoute]:
    return [Mount("/sub", app=App(routes=route()))]


def mounted_installed_app() -> list[BaseRoute]:
    return [Mount("/sub", app=starlette_mw.install(Starlette(routes=route())))]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("routes", "path"),
    [
        (route, "/"),
        # An app with a layer of its own, mounted in an App: the inner layer leaves the outer one in charge.
        (mounted_app, "/sub/"),
        (mounted_installed_app, "/sub/"),
    ],
)
async def test_a_start_held_back_outside_does_not_count_as_sent(
    routes: Callable[[], list[BaseRoute]], path: str
) -> None:
    # GZipMiddleware holds the response start until the first body chunk, which never comes: the
    # start passed through Timing and CORS but never reached the client.
    app = App(routes=routes())
    app.add_middleware(TimingMiddleware)
    app.add_middleware(CORSMiddleware, preset="first-party", allow_origins=[ORIGIN])
    app.add_middleware(GZipMiddleware)
    response = await get_500(app, path, headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["server-timing"].startswith("app;dur=")
    assert len(response.headers.get_list("x-process-time")) == 1


class RetryOnce:
    """A plain ASGI middleware that runs the app again when it raises ConnectionError."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ConnectionError:
            await self.app(scope, receive, send)


@pytest.mark.anyio
async def test_a_response_after_a_retry_is_edited_once() -> None:
    attempts: list[int] = []

    async def flaky(request: Request) -> Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first attempt")
        return PlainTextResponse("second attempt")

    app = App(
        routes=[Route("/", flaky)],
        middleware=[
            Middleware(RetryOnce),
            Middleware(TimingMiddleware),
            Middleware(CORSMiddleware, preset="first-party", allow_origins=[ORIGIN]),
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/", headers={"Origin": ORIGIN})
    assert response.text == "second attempt"
    assert response.headers.get_list("vary") == ["Origin"]
    assert len(response.headers.get_list("server-timing")) == 1
    assert len(response.headers.get_list("x-process-time")) == 1
    assert response.headers.get_list("access-control-allow-origin") == [ORIGIN]
