"""Middleware on routers, Mounts and routes, FastAPI's APIRouter and APIRoute included (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

import starlette_mw
from starlette_mw import CallNext, HTTPMiddleware, TimingMiddleware, describe
from starlette_mw.testing.tracing import trace

LiveServer = Callable[[ASGIApp], str]
ROOT = Path(__file__).resolve().parents[2]
Backend = Literal["asyncio", "trio"]


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def named(name: str, log: list[str] | None = None) -> Callable[[Request, CallNext], Any]:
    """A middleware function named `name` that adds `X-<name>: <the path its include= would see>`."""

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        if log is not None:
            log.append(name)
        response = await call_next(request)
        response.headers[f"X-{name}"] = request.url.path
        return response

    dispatch.__name__ = dispatch.__qualname__ = name
    return dispatch


class Plain:
    """A plain ASGI middleware, for Starlette's own `middleware=`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class Audit(HTTPMiddleware):
    """A class middleware with an option, registered with `starlette_mw.add_middleware`."""

    def __init__(self, app: ASGIApp, *, log: list[str]) -> None:
        super().__init__(app)
        self.log = log

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        self.log.append("Audit")
        return await call_next(request)


def traced(*names: str) -> list[str]:
    """The trace of a request that met `names` on its way in, reached the endpoint and met them again on its way out."""
    return [*names, "endpoint", *reversed(names)]


# Starlette


def starlette_app(log: list[str]) -> tuple[Starlette, Route, Router, Mount]:
    users = Route("/users", hello, middleware=[Middleware(Plain)])
    inner = Router(routes=[users, Route("/other", hello), WebSocketRoute("/ws", echo)])
    api = Mount("/api", routes=[Mount("/v1", app=inner)], middleware=[Middleware(Plain)])
    app = Starlette(routes=[api, Route("/", hello)])
    starlette_mw.middleware(app, "http")(named("app_level", log))
    starlette_mw.middleware(api, "http")(named("mount_level", log))
    starlette_mw.middleware(inner, "http")(named("router_level", log))
    starlette_mw.middleware(users, "http")(named("route_level", log))
    starlette_mw.add_middleware(users, Audit, log=log)
    return app, users, inner, api


@pytest.mark.anyio
async def test_starlette_app_router_mount_and_route_layers_in_order() -> None:
    log: list[str] = []
    app, *_ = starlette_app(log)
    recorded = trace(app)
    async with client(app) as http:
        response = await http.get("/api/v1/users")
        other = await http.get("/api/v1/other")
        root = await http.get("/")
    assert response.text == "hello"
    # The app's stack outside, then each object inward; on one object, the last registered outermost.
    assert recorded.requests[0] == traced("app_level", "mount_level", "router_level", "Audit", "route_level")
    assert recorded.requests[1] == traced("app_level", "mount_level", "router_level")
    assert recorded.requests[2] == traced("app_level")
    assert log == [
        *("app_level", "mount_level", "router_level", "Audit", "route_level"),
        *("app_level", "mount_level", "router_level"),
        "app_level",
    ]
    assert {"x-route_level", "x-router_level", "x-mount_level", "x-app_level"} <= set(response.headers)  # lowercased
    assert "X-route_level" not in other.headers
    assert "X-mount_level" not in root.headers


@pytest.mark.anyio
async def test_a_trace_lists_no_route_layers_of_an_untraced_app_mounted_in_it() -> None:
    route = Route("/users", hello)
    starlette_mw.middleware(route, "http")(named("inner_route"))
    inner = Starlette(routes=[route])
    starlette_mw.middleware(inner, "http")(named("inner_app"))
    outer = Starlette(routes=[Mount("/inner", app=inner)])
    starlette_mw.middleware(outer, "http")(named("outer_app"))
    recorded = trace(outer)
    async with client(outer) as http:
        response = await http.get("/inner/users")
    assert response.headers["X-inner_route"] == "/inner/users"
    assert recorded.last == traced("outer_app")


@pytest.mark.anyio
async def test_a_traced_app_mounted_in_another_records_its_route_layers_in_its_own_trace() -> None:
    route = Route("/users", hello)
    starlette_mw.middleware(route, "http")(named("inner_route"))
    inner = Starlette(routes=[route])
    starlette_mw.middleware(inner, "http")(named("inner_app"))
    outer = Starlette(routes=[Mount("/inner", app=inner)])
    starlette_mw.middleware(outer, "http")(named("outer_app"))
    outer_trace, inner_trace = trace(outer), trace(inner)
    async with client(outer) as http:
        await http.get("/inner/users")
    assert outer_trace.last == traced("outer_app")
    assert inner_trace.last == traced("inner_app", "inner_route")


@pytest.mark.anyio
async def test_registered_layers_are_outside_starlettes_own_middleware_argument() -> None:
    log: list[str] = []

    class First(Plain):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            log.append("First")
            await self.app(scope, receive, send)

    route = Route("/", hello, middleware=[Middleware(First)])
    starlette_mw.middleware(route, "http")(named("registered", log))
    async with client(Starlette(routes=[route])) as http:
        await http.get("/")
    assert log == ["registered", "First"]


@pytest.mark.anyio
async def test_include_sees_the_path_inside_the_mount() -> None:
    api = Mount("/api", routes=[Route("/users", hello), Route("/health", hello), Route("/api/users", hello)])
    starlette_mw.middleware(api, "http", include="/users", exclude="/health")(named("scoped"))
    async with client(Starlette(routes=[api])) as http:
        users = await http.get("/api/users")
        health = await http.get("/api/health")
        doubled = await http.get("/api/api/users")
    # The Mount's routes see '/users' for '/api/users', and so does its middleware's include=.
    assert users.headers["X-scoped"] == "/api/users"
    assert "X-scoped" not in health.headers
    assert "X-scoped" not in doubled.headers


@pytest.mark.anyio
async def test_a_route_answers_405_before_its_middleware() -> None:
    log: list[str] = []
    route = Route("/", hello, methods=["GET"])
    starlette_mw.middleware(route, "http")(named("route_level", log))
    async with client(Starlette(routes=[route])) as http:
        response = await http.post("/")
    assert response.status_code == 405
    assert log == []


def test_a_route_layer_puts_its_headers_on_the_500_when_the_endpoint_raises(anyio_backend: Backend) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    route = Route("/", boom)
    starlette_mw.add_middleware(route, TimingMiddleware)
    app = starlette_mw.App(routes=[route])
    with TestClient(app, raise_server_exceptions=False, backend=anyio_backend) as test_client:
        response = test_client.get("/")
    assert response.status_code == 500
    assert float(response.headers["X-Process-Time"]) > 0


def test_websockets_pass_through_router_and_route_layers(anyio_backend: Backend) -> None:
    log: list[str] = []
    ws = WebSocketRoute("/ws", echo)
    router = Router(routes=[ws])
    api = Mount("/api", app=router)
    starlette_mw.middleware(api, "http")(named("mount_level", log))
    starlette_mw.middleware(router, "http")(named("router_level", log))
    starlette_mw.add_middleware(router, TimingMiddleware)
    with TestClient(Starlette(routes=[api]), backend=anyio_backend) as test_client:
        with test_client.websocket_connect("/api/ws") as websocket:
            websocket.send_text("ping")
            assert websocket.receive_text() == "ping"
    assert log == []


@pytest.mark.anyio
async def test_registering_after_the_app_started_applies_to_the_next_request() -> None:
    log: list[str] = []
    route = Route("/", hello)
    app = Starlette(routes=[route])
    async with client(app) as http:
        await http.get("/")
        starlette_mw.middleware(route, "http")(named("late", log))
        starlette_mw.middleware(app.router, "http")(named("late_router", log))
        response = await http.get("/")
    assert log == ["late_router", "late"]
    assert response.headers["X-late"] == "/"


# FastAPI


def fastapi_app(log: list[str]) -> tuple[FastAPI, APIRouter, APIRouter]:
    app = FastAPI()
    parent = APIRouter(prefix="/api")
    child = APIRouter(prefix="/v1")

    def resource() -> Iterator[str]:
        log.append("dependency enter")
        yield "resource"
        log.append("dependency exit")

    @child.get("/items")
    async def items(background: BackgroundTasks, value: str = Depends(resource)) -> dict[str, str]:
        background.add_task(log.append, "background task")
        return {"value": value}

    @parent.get("/status")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"root": "ok"}

    starlette_mw.middleware(app, "http")(named("app_level", log))
    starlette_mw.middleware(child, "http")(named("child_before_include", log))
    parent.include_router(child)
    app.include_router(parent)
    # After include_router: FastAPI keeps the routers it includes, so these apply too.
    starlette_mw.middleware(parent, "http")(named("parent_level", log))
    starlette_mw.add_middleware(child, Audit, log=log)
    route = next(route for route in child.routes if isinstance(route, APIRoute))
    starlette_mw.middleware(route, "http")(named("route_level", log))
    return app, parent, child


@pytest.mark.anyio
async def test_fastapi_app_router_and_route_layers_in_order() -> None:
    log: list[str] = []
    app, _, _ = fastapi_app(log)
    recorded = trace(app)
    async with client(app) as http:
        items = await http.get("/api/v1/items")
        status = await http.get("/api/status")
        root = await http.get("/")
    assert items.json() == {"value": "resource"}
    assert recorded.requests[0] == traced("app_level", "parent_level", "Audit", "child_before_include", "route_level")
    assert recorded.requests[1] == traced("app_level", "parent_level")
    assert recorded.requests[2] == traced("app_level")
    assert items.headers["X-route_level"] == "/api/v1/items"
    assert {"x-child_before_include", "x-parent_level", "x-app_level"} <= set(items.headers)  # lowercased
    assert "X-child_before_include" not in status.headers
    assert "X-parent_level" not in root.headers


@pytest.mark.anyio
async def test_yield_dependencies_and_background_tasks_behind_router_middleware() -> None:
    log: list[str] = []
    app, _, _ = fastapi_app(log)
    async with client(app) as http:
        response = await http.get("/api/v1/items")
    assert response.json() == {"value": "resource"}
    assert log[:5] == ["app_level", "parent_level", "Audit", "child_before_include", "route_level"]
    # The dependency enters inside every layer; the background task runs and then the dependency
    # exits, after the response went through the layers, in FastAPI's own order.
    assert log[5:] == ["dependency enter", "background task", "dependency exit"]


def test_fastapi_websockets_pass_through(anyio_backend: Backend) -> None:
    log: list[str] = []
    app = FastAPI()
    router = APIRouter(prefix="/live")

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await echo(websocket)

    app.include_router(router)
    starlette_mw.middleware(router, "http")(named("router_level", log))
    starlette_mw.middleware(app.router, "http")(named("app_router", log))
    with TestClient(app, backend=anyio_backend) as test_client:
        with test_client.websocket_connect("/live/ws") as websocket:
            websocket.send_text("ping")
            assert websocket.receive_text() == "ping"
    assert log == []


def test_an_apirouter_mounted_as_an_app_runs_its_layers(anyio_backend: Backend) -> None:
    log: list[str] = []
    router = APIRouter()

    @router.get("/x")
    async def x() -> dict[str, str]:
        return {"x": "x"}

    starlette_mw.middleware(router, "http")(named("router_level", log))
    app = FastAPI()
    app.mount("/sub", router)  # as an ASGI app, reached through Router.__call__
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.get("/sub/x")
    assert response.json() == {"x": "x"}
    assert log == ["router_level"]


def test_a_mount_inside_an_apirouter(anyio_backend: Backend) -> None:
    log: list[str] = []
    api = Mount("/files", routes=[Route("/{name}", hello)])
    router = APIRouter(routes=[api])
    app = FastAPI()
    app.include_router(router, prefix="/v1")
    starlette_mw.middleware(api, "http", include="/{name}")(named("mount_level", log))
    with TestClient(app, backend=anyio_backend) as test_client:
        response = test_client.get("/v1/files/a.txt")
    assert response.text == "hello"
    # FastAPI serves a copy of the Mount, moved under the prefix; the copy runs its layers.
    assert response.headers["X-mount_level"] == "/v1/files/a.txt"
    assert log == ["mount_level"]


# What is accepted


@pytest.mark.parametrize(
    "target",
    [WebSocketRoute("/ws", echo), Host("example.com", app=Router()), object(), None, "/api"],
    ids=["websocket-route", "host", "object", "none", "str"],
)
def test_other_targets_get_a_type_error_naming_what_is_accepted(target: Any) -> None:
    accepted = "a Starlette or FastAPI app, a Router or FastAPI APIRouter, a Mount, or a Route or FastAPI APIRoute"
    with pytest.raises(TypeError, match=accepted):
        starlette_mw.middleware(target, "http")
    with pytest.raises(TypeError, match=accepted):
        starlette_mw.add_middleware(target, TimingMiddleware)


def test_a_middleware_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="Middleware 'Timing' is not callable; pass a middleware class"):
        starlette_mw.add_middleware(Router(), "Timing")  # type: ignore[arg-type]


def test_a_bad_option_fails_where_it_is_registered() -> None:
    with pytest.raises(ValueError, match="include pattern 'api' must start with '/'"):
        starlette_mw.add_middleware(Route("/", hello), TimingMiddleware, include="api")


@pytest.mark.anyio
async def test_add_middleware_on_an_app_is_the_apps_own() -> None:
    log: list[str] = []
    app = Starlette(routes=[Route("/", hello)])
    starlette_mw.add_middleware(app, Audit, log=log)
    assert [middleware.cls for middleware in app.user_middleware] == [Audit]  # type: ignore[comparison-overlap]
    async with client(app) as http:
        await http.get("/")
    assert log == ["Audit"]


# describe() and python -m starlette_mw stack


def test_describe_shows_the_tree() -> None:
    app, *_ = starlette_app([])
    assert str(describe(app)).split("routes with middleware, inside the app's stack (outermost first):\n")[1] == (
        "  Mount '/api':\n"
        "    1. mount_level\n"
        "    2. Plain\n"
        "    Router '/api/v1':\n"
        "      1. router_level\n"
        "      Route '/api/v1/users':\n"
        "        1. Audit\n"
        "        2. route_level\n"
        "        3. Plain"
    )


def test_describe_shows_included_fastapi_routers() -> None:
    app, _, _ = fastapi_app([])
    stack = describe(app)
    assert "app_level" in stack.layers
    (parent,) = stack.routes
    assert (parent.kind, parent.path, parent.layers) == ("APIRouter", "/api", ("parent_level",))
    (child,) = parent.routes
    assert (child.kind, child.path, child.layers) == ("APIRouter", "/api/v1", ("Audit", "child_before_include"))
    (route,) = child.routes
    assert (route.kind, route.path, route.layers) == ("APIRoute", "/api/v1/items", ("route_level",))


def test_describe_without_route_middleware_is_unchanged() -> None:
    app = Starlette(routes=[Route("/", hello), Mount("/api", routes=[Route("/x", hello)])])
    assert describe(app).routes == ()
    assert "routes with middleware" not in str(describe(app))


def test_stack_command_prints_the_tree(tmp_path: Path) -> None:
    (tmp_path / "routed.py").write_text(
        "import starlette_mw\n"
        "from fastapi import APIRouter, FastAPI\n"
        "app = FastAPI()\n"
        "api = APIRouter(prefix='/api')\n"
        "@api.get('/items')\n"
        "async def items() -> list[str]:\n"
        "    return []\n"
        "app.include_router(api)\n"
        "@starlette_mw.middleware(api, 'http')\n"
        "async def authenticate(request, call_next):\n"
        "    return await call_next(request)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "starlette_mw", "stack", "routed:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.endswith(
        "routes with middleware, inside the app's stack (outermost first):\n  APIRouter '/api':\n    1. authenticate\n"
    )


# Under a real server


def test_router_middleware_under_uvicorn(mw_live_server: LiveServer) -> None:
    log: list[str] = []
    app, _, _ = fastapi_app(log)

    base_url = mw_live_server(app)
    with httpx.Client(base_url=base_url) as http:
        items = http.get("/api/v1/items")
        status = http.get("/api/status")
    assert items.json() == {"value": "resource"}
    assert items.headers["X-route_level"] == "/api/v1/items"
    assert status.headers["X-parent_level"] == "/api/status"
    assert "X-route_level" not in status.headers
    assert log[:5] == ["app_level", "parent_level", "Audit", "child_before_include", "route_level"]


def test_the_docs_stack_output_is_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "starlette_mw", "stack", "examples.admin_router:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == (ROOT / "docs_src" / "routers" / "stack_output.txt").read_text()


def test_docs_example_under_uvicorn(mw_live_server: LiveServer) -> None:
    from examples.admin_router import app

    with httpx.Client(base_url=mw_live_server(app)) as http:
        forbidden = http.get("/admin/users")
        allowed = http.get("/admin/users", headers={"X-Role": "admin"})
        health = http.get("/admin/health")
        home = http.get("/")
    assert (forbidden.status_code, forbidden.text) == (403, "Forbidden")
    assert allowed.json() == ["ada"]
    assert float(allowed.headers["X-Process-Time"]) > 0
    assert "X-Process-Time" not in forbidden.headers  # the route's layer is inside the router's
    assert health.json() == "ok"
    assert "X-Process-Time" not in health.headers
    assert home.json() == "home"
    assert str(describe(app)).endswith(
        "  APIRouter '/admin':\n    1. require_admin\n    APIRoute '/admin/users':\n      1. TimingMiddleware"
    )
