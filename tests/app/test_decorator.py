"""`@app.middleware("http")` on Starlette, with FastAPI's meaning: order, errors, paths, other middleware."""

from __future__ import annotations

import functools
import gzip
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import starlette_mw
from starlette_mw import App, CallNext, HTTPMiddleware, MiddlewareMixin

LiveServer = Callable[[ASGIApp], str]


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def client(app: ASGIApp, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


class Recorder:
    """A plain ASGI middleware that logs '<name> in' on the request and '<name> out' on the response."""

    def __init__(self, app: ASGIApp, *, name: str, log: list[str]) -> None:
        self.app = app
        self.name = name
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.log.append(f"{self.name} in")

        async def send_out(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.log.append(f"{self.name} out")
            await send(message)

        await self.app(scope, receive, send_out)


def recording(name: str, log: list[str]) -> Callable[[Request, CallNext], Any]:
    """A middleware function that logs its way in and out, named `name`."""

    async def record(request: Request, call_next: CallNext) -> Response:
        log.append(f"{name} in")
        response = await call_next(request)
        log.append(f"{name} out")
        return response

    record.__name__ = record.__qualname__ = name
    return record


# The FastAPI tutorial: https://fastapi.tiangolo.com/tutorial/middleware/


@pytest.mark.anyio
async def test_process_time_header_from_the_fastapi_tutorial() -> None:
    app = App(routes=[Route("/", hello)])

    @app.middleware("http")
    async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
        start_time = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Process-Time"] = str(time.perf_counter() - start_time)
        return response

    async with client(app) as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert response.text == "hello"
    assert float(response.headers["X-Process-Time"]) > 0


@pytest.mark.anyio
async def test_decorator_returns_the_function_unchanged() -> None:
    app = App(routes=[Route("/", hello)])

    async def add_header(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers.append("X-Added", "yes")
        return response

    assert app.middleware("http")(add_header) is add_header
    assert starlette_mw.middleware(app, "http")(add_header) is add_header
    async with client(app) as http:
        response = await http.get("/")
    assert response.headers.get_list("X-Added") == ["yes", "yes"]


@pytest.mark.anyio
async def test_decorator_registers_through_the_apps_own_add_middleware() -> None:
    class SpyApp(App):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.added: list[tuple[Any, dict[str, Any]]] = []

        def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
            self.added.append((middleware_class, kwargs))
            super().add_middleware(middleware_class, *args, **kwargs)

    app = SpyApp(routes=[Route("/", hello)])

    @app.middleware("http", exclude="/health")
    async def add_header(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["X-Added"] = "yes"
        return response

    assert len(app.added) == 1
    middleware_class, kwargs = app.added[0]
    assert middleware_class is HTTPMiddleware
    assert kwargs["dispatch"] is add_header
    assert kwargs["exclude"] == "/health"
    async with client(app) as http:
        response = await http.get("/")
    assert response.headers["X-Added"] == "yes"


@pytest.mark.anyio
async def test_the_later_decorator_is_outermost() -> None:
    log: list[str] = []
    app = App(routes=[Route("/", hello)])

    @app.middleware("http")
    async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
        log.append("process time in")
        response = await call_next(request)
        response.headers["X-Process-Time"] = "0.001"
        log.append("process time out")
        return response

    @app.middleware("http")
    async def add_server_header(request: Request, call_next: CallNext) -> Response:
        log.append("server in")
        response = await call_next(request)
        # The inner middleware's header is already there: it ran first on the way out.
        log.append(f"server out, saw X-Process-Time={response.headers.get('X-Process-Time')}")
        response.headers["X-Server"] = "starlette_mw"
        return response

    async with client(app) as http:
        response = await http.get("/")
    assert response.headers["X-Process-Time"] == "0.001"
    assert response.headers["X-Server"] == "starlette_mw"
    assert log == ["server in", "process time in", "process time out", "server out, saw X-Process-Time=0.001"]


@pytest.mark.anyio
async def test_add_middleware_a_then_b_runs_b_first() -> None:
    log: list[str] = []
    app = App(routes=[Route("/", hello)])
    app.add_middleware(Recorder, name="A", log=log)
    app.add_middleware(Recorder, name="B", log=log)
    async with client(app) as http:
        await http.get("/")
    assert log == ["B in", "A in", "A out", "B out"]


def register_interleaved(app: Starlette, decorate: Callable[[], Callable[[Any], Any]], log: list[str]) -> None:
    decorate()(recording("deco1", log))
    app.add_middleware(Recorder, name="added1", log=log)
    decorate()(recording("deco2", log))
    app.add_middleware(Recorder, name="added2", log=log)


@pytest.mark.anyio
async def test_decorators_add_middleware_and_constructor_list_form_starlettes_one_order() -> None:
    log: list[str] = []
    app = App(
        routes=[Route("/", hello)],
        middleware=[Middleware(Recorder, name="ctor1", log=log), Middleware(Recorder, name="ctor2", log=log)],
    )
    register_interleaved(app, lambda: starlette_mw.middleware(app, "http"), log)
    async with client(app) as http:
        await http.get("/")

    # Starlette's rule: add_middleware inserts at the front of user_middleware, the constructor's
    # list keeps its order after everything added later, and the first entry is the outermost.
    way_in = ["added2", "deco2", "added1", "deco1", "ctor1", "ctor2"]
    assert log == [f"{name} in" for name in way_in] + [f"{name} out" for name in reversed(way_in)]
    registered = [kwargs.get("name") or kwargs["dispatch"].__name__ for _, _, kwargs in app.user_middleware]
    assert registered == way_in


@pytest.mark.anyio
async def test_same_order_as_fastapis_own_decorator() -> None:
    ours: list[str] = []
    app = App(routes=[Route("/", hello)], middleware=[Middleware(Recorder, name="ctor", log=ours)])
    register_interleaved(app, lambda: app.middleware("http"), ours)

    theirs: list[str] = []
    fastapi_app = FastAPI(middleware=[Middleware(Recorder, name="ctor", log=theirs)])
    fastapi_app.add_api_route("/", hello)
    register_interleaved(fastapi_app, lambda: fastapi_app.middleware("http"), theirs)

    async with client(app) as http:
        await http.get("/")
    async with client(fastapi_app) as http:
        await http.get("/")
    assert ours == theirs
    assert ours[0] == "added2 in"


@pytest.mark.anyio
async def test_class_based_middleware_does_not_always_run_before_decorator_middleware() -> None:
    # A popular tutorial says class-based middleware always runs before function middleware.
    # Registration order decides: a decorator registered after a class is outside it, so it runs first.
    log: list[str] = []

    class ClassBased(HTTPMiddleware):
        async def dispatch(self, request: Request, call_next: CallNext) -> Response:
            log.append("class-based in")
            return await call_next(request)

    app = App(routes=[Route("/", hello)])
    app.add_middleware(ClassBased)

    @app.middleware("http")
    async def decorated(request: Request, call_next: CallNext) -> Response:
        log.append("decorator in")
        return await call_next(request)

    async with client(app) as http:
        await http.get("/")
    assert log == ["decorator in", "class-based in"]


def big(request: Request) -> Response:
    return PlainTextResponse("x" * 2000)


def app_with_starlette_middleware(log: list[str]) -> App:
    app = App(routes=[Route("/", big)])

    @app.middleware("http")
    async def inner(request: Request, call_next: CallNext) -> Response:
        log.append("inner")
        response = await call_next(request)
        response.headers["X-Inner"] = "yes"
        return response

    app.add_middleware(GZipMiddleware, minimum_size=100)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["example.com"])
    app.add_middleware(CORSMiddleware, allow_origins=["https://site.example"], allow_methods=["GET"])

    @app.middleware("http")
    async def outer(request: Request, call_next: CallNext) -> Response:
        log.append("outer")
        response = await call_next(request)
        response.headers["X-Outer"] = str(response.status_code)
        return response

    return app


@pytest.mark.anyio
async def test_decorators_around_gzip_compress() -> None:
    log: list[str] = []
    app = app_with_starlette_middleware(log)
    async with client(app, "http://example.com") as http:
        # Read the raw bytes, so the test sees what GZipMiddleware sent rather than httpx's decoding.
        async with http.stream("GET", "/", headers={"Accept-Encoding": "gzip"}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(raw) < 2000
    assert gzip.decompress(raw) == b"x" * 2000
    assert response.headers["X-Inner"] == "yes"
    assert response.headers["X-Outer"] == "200"
    assert log == ["outer", "inner"]


@pytest.mark.anyio
async def test_trusted_host_rejects_a_bad_host_without_calling_decorators_inside_it() -> None:
    log: list[str] = []
    app = app_with_starlette_middleware(log)
    async with client(app, "http://evil.example") as http:
        response = await http.get("/")
    assert response.status_code == 400
    assert response.text == "Invalid host header"
    assert response.headers["X-Outer"] == "400"
    assert "X-Inner" not in response.headers
    assert log == ["outer"]


@pytest.mark.anyio
async def test_cors_preflight_is_answered_outside_inner_decorators() -> None:
    log: list[str] = []
    app = app_with_starlette_middleware(log)
    async with client(app, "http://example.com") as http:
        response = await http.options(
            "/", headers={"Origin": "https://site.example", "Access-Control-Request-Method": "GET"}
        )
        refused = await http.options(
            "/", headers={"Origin": "https://other.example", "Access-Control-Request-Method": "GET"}
        )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://site.example"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["X-Outer"] == "200"
    assert refused.status_code == 400
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert log == ["outer", "outer"]


# starlette_mw.middleware(app, "http") on apps that are not `App`


@pytest.mark.anyio
async def test_function_form_on_a_plain_starlette_app() -> None:
    app = Starlette(routes=[Route("/", hello)])

    @starlette_mw.middleware(app, "http")
    async def add_header(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["X-Added"] = "yes"
        return response

    async with client(app) as http:
        response = await http.get("/")
    assert response.text == "hello"
    assert response.headers["X-Added"] == "yes"


@pytest.mark.anyio
async def test_function_form_on_a_fastapi_app() -> None:
    log: list[str] = []
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        log.append("endpoint")
        return {"item_id": item_id}

    @app.middleware("http")  # FastAPI's own
    async def fastapi_own(request: Request, call_next: CallNext) -> Response:
        log.append("fastapi's decorator")
        return await call_next(request)

    @starlette_mw.middleware(app, "http", include="/items/*")
    async def ours(request: Request, call_next: CallNext) -> Response:
        log.append("starlette_mw decorator")
        response = await call_next(request)
        response.headers["X-Ours"] = "yes"
        return response

    async with client(app) as http:
        response = await http.get("/items/3")
        not_found = await http.get("/nothing")
        invalid = await http.get("/items/three")
    assert response.json() == {"item_id": 3}
    assert response.headers["X-Ours"] == "yes"
    assert not_found.status_code == 404
    assert "X-Ours" not in not_found.headers
    assert invalid.status_code == 422  # FastAPI's validation still answers inside our middleware
    assert invalid.headers["X-Ours"] == "yes"
    assert log == [
        "starlette_mw decorator",
        "fastapi's decorator",
        "endpoint",
        "fastapi's decorator",
        "starlette_mw decorator",
        "fastapi's decorator",
    ]


def test_mixin_on_a_class_that_is_not_a_starlette_app() -> None:
    class NotAnApp(MiddlewareMixin):
        pass

    with pytest.raises(
        TypeError, match=r"NotAnApp, which is not a Starlette app.*class App\(MiddlewareMixin, Starlette\)"
    ):
        NotAnApp().middleware("http")


# Errors at decoration time


def test_middleware_type_other_than_http() -> None:
    app = App()
    with pytest.raises(ValueError, match=r"""'websocket' is not supported; use @app\.middleware\("http"\)"""):
        app.middleware("websocket")
    assert app.user_middleware == []


@pytest.mark.anyio
async def test_async_callable_objects_and_partials_are_accepted() -> None:
    # FastAPI's decorator takes any async callable; so does this one.
    calls: list[str] = []

    class AddHeader:
        async def __call__(self, request: Request, call_next: CallNext) -> Response:
            calls.append("object")
            return await call_next(request)

    async def tagged(tag: str, request: Request, call_next: CallNext) -> Response:
        calls.append(tag)
        return await call_next(request)

    app = App(routes=[Route("/", hello)])
    app.middleware("http")(AddHeader())
    app.middleware("http")(functools.partial(tagged, "partial"))
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert calls == ["partial", "object"]


def test_non_async_function() -> None:
    app = App()

    def add_header(request: Request, call_next: CallNext) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match=r"'.*add_header' is not an 'async def' function; write it as 'async def f"):
        app.middleware("http")(add_header)  # type: ignore[type-var]
    assert app.user_middleware == []


async def one_parameter(request: Request) -> Response:
    raise AssertionError("never called")


async def three_parameters(request: Request, call_next: CallNext, extra: int) -> Response:
    raise AssertionError("never called")


@pytest.mark.parametrize("func", [one_parameter, three_parameters])
def test_function_not_taking_two_parameters(func: Any) -> None:
    app = App()
    with pytest.raises(TypeError, match=rf"'{func.__name__}' takes \(.*\).*; it must take two parameters"):
        app.middleware("http")(func)
    assert app.user_middleware == []


@pytest.mark.parametrize(
    ("include", "exclude", "error", "message"),
    [
        ("api/*", None, ValueError, r"include pattern 'api/\*' must start with '/', as in '/api/\*'"),
        (None, "/api/*/health", ValueError, r"exclude pattern '/api/\*/health' has a '\*' that is not a final '/\*'"),
        (None, ["/health", 42], TypeError, r"exclude pattern 42 has type int; use a path string"),
        ([], None, ValueError, r"include=\[\] matches no path; pass None"),
    ],
)
def test_bad_path_pattern(include: Any, exclude: Any, error: type[Exception], message: str) -> None:
    app = App()
    # The error comes from app.middleware(...) itself, before any function is decorated.
    with pytest.raises(error, match=message):
        app.middleware("http", include=include, exclude=exclude)
    assert app.user_middleware == []


@pytest.mark.anyio
async def test_registering_after_the_app_started_keeps_starlettes_runtime_error() -> None:
    app = App(routes=[Route("/", hello)])
    async with client(app) as http:
        await http.get("/")

    async def late(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    with pytest.raises(RuntimeError, match="Cannot add middleware after an application has started"):
        app.middleware("http")(late)


# include= / exclude=


def path_echo(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


@pytest.mark.anyio
async def test_exclude_skips_health() -> None:
    calls: list[str] = []
    app = App(routes=[Route("/{path:path}", path_echo)])

    @app.middleware("http", exclude="/health")
    async def add_header(request: Request, call_next: CallNext) -> Response:
        calls.append(request.url.path)
        response = await call_next(request)
        response.headers["X-Added"] = "yes"
        return response

    async with client(app) as http:
        health = await http.get("/health")
        other = await http.get("/healthz")
    assert health.text == "/health"
    assert "X-Added" not in health.headers
    assert other.headers["X-Added"] == "yes"
    assert calls == ["/healthz"]


@pytest.mark.anyio
async def test_include_applies_only_to_the_api_subtree() -> None:
    calls: list[str] = []
    app = App(routes=[Route("/{path:path}", path_echo)])

    @app.middleware("http", include=["/api/*"])
    async def add_header(request: Request, call_next: CallNext) -> Response:
        calls.append(request.url.path)
        return await call_next(request)

    async with client(app) as http:
        for path in ["/api", "/api/users", "/apix", "/", "/v1/api/users"]:
            assert (await http.get(path)).text == path
    assert calls == ["/api", "/api/users"]


# Under a real server


def test_under_uvicorn(mw_live_server: LiveServer) -> None:
    log: list[str] = []

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[str]:
            for i in range(5):
                yield f"chunk {i}\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    app = App(routes=[Route("/", hello), Route("/stream", stream), Route("/health", hello)])
    app.add_middleware(Recorder, name="class", log=log)

    @app.middleware("http", exclude="/health")
    async def add_server_header(request: Request, call_next: CallNext) -> Response:
        log.append("decorator in")
        response = await call_next(request)
        response.headers["X-Server"] = "starlette_mw"
        log.append("decorator out")
        return response

    base_url = mw_live_server(app)
    with httpx.Client(base_url=base_url) as http:
        response = http.get("/")
        streamed = http.get("/stream")
        health = http.get("/health")
    assert response.text == "hello"
    assert response.headers["X-Server"] == "starlette_mw"
    assert streamed.text == "".join(f"chunk {i}\n" for i in range(5))
    assert streamed.headers["X-Server"] == "starlette_mw"
    assert health.text == "hello"
    assert "X-Server" not in health.headers
    assert log == ["decorator in", "class in", "class out", "decorator out"] * 2 + ["class in", "class out"]
