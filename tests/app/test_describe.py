"""`describe(app)` and `python -m starlette_mw stack`: the layers in the order a request meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw import App, CallNext, HTTPMiddleware, Stack, describe

ROOT = Path(__file__).resolve().parents[2]


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


class Audit:
    """A plain ASGI middleware that logs its class name when a request passes."""

    def __init__(self, app: ASGIApp, log: list[str]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.log.append(type(self).__name__)
        await self.app(scope, receive, send)


class RateLimit(Audit):
    pass


class Timing(HTTPMiddleware):
    def __init__(self, app: ASGIApp, log: list[str]) -> None:
        super().__init__(app)
        self.log = log

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        self.log.append(type(self).__name__)
        return await call_next(request)


def recorded_app(log: list[str]) -> App:
    app = App(routes=[Route("/", hello)], middleware=[Middleware(RateLimit, log=log)])

    @app.middleware("http")
    async def add_process_time(request: Request, call_next: CallNext) -> Response:
        log.append("add_process_time")
        return await call_next(request)

    app.add_middleware(Timing, log=log)
    app.add_middleware(Audit, log=log)

    @app.middleware("http", exclude="/health")
    async def add_server_header(request: Request, call_next: CallNext) -> Response:
        log.append("add_server_header")
        return await call_next(request)

    return app


def test_layers_in_the_order_a_request_meets_them() -> None:
    app = recorded_app([])
    assert describe(app).layers == (
        "ErrorResponseMiddleware",
        "add_server_header",
        "Audit",
        "Timing",
        "add_process_time",
        "RateLimit",
        "ExceptionMiddleware",
        "Router",
    )


@pytest.mark.anyio
async def test_layers_match_a_recorded_request() -> None:
    log: list[str] = []
    app = recorded_app(log)
    before = describe(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        assert (await http.get("/")).text == "hello"
    # The first two layers (the package's and Starlette's) and the last two record nothing; every
    # user layer in between does.
    assert list(before.layers[1:-2]) == log
    # Once the app has built its stack for the first request, describe() reads that one.
    assert describe(app) == before


@pytest.mark.anyio
async def test_describe_does_not_install_the_stack() -> None:
    app = App(routes=[Route("/", hello)])
    assert describe(app).layers == ("ErrorResponseMiddleware", "ExceptionMiddleware", "Router")
    app.add_middleware(GZipMiddleware)  # still allowed: describe() did not start the app
    assert describe(app).layers == (
        "ErrorResponseMiddleware",
        "GZipMiddleware",
        "ExceptionMiddleware",
        "Router",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        assert (await http.get("/")).text == "hello"


def test_starlette_middleware_and_base_http_middleware_names() -> None:
    async def legacy(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    class LegacyClass(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: CallNext) -> Response:
            return await call_next(request)

    app = Starlette(
        middleware=[
            Middleware(CORSMiddleware, allow_origins=["*"]),
            Middleware(BaseHTTPMiddleware, dispatch=legacy),
            Middleware(LegacyClass),
            Middleware(HTTPMiddleware, dispatch=legacy),
        ]
    )
    assert describe(app).layers == (
        "ServerErrorMiddleware",
        "CORSMiddleware",
        "legacy",
        "LegacyClass",
        "legacy",
        "ExceptionMiddleware",
        "Router",
    )


def test_fastapi_app() -> None:
    app = FastAPI()

    @app.middleware("http")
    async def fastapi_decorated(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    app.add_middleware(GZipMiddleware)
    layers = describe(app).layers
    assert layers[0] == "ServerErrorMiddleware"
    assert layers[-1] == "Router"
    user = layers.index("GZipMiddleware")
    assert layers[user : user + 2] == ("GZipMiddleware", "fastapi_decorated")
    assert layers.index("ExceptionMiddleware") > user + 1


def test_str_shows_the_request_path_then_the_response_path() -> None:
    stack = Stack(("ServerErrorMiddleware", "add_process_time", "GZipMiddleware", "ExceptionMiddleware", "Router"))
    assert str(stack) == (
        "request (outermost first):\n"
        "  1. ServerErrorMiddleware\n"
        "  2. add_process_time\n"
        "  3. GZipMiddleware\n"
        "  4. ExceptionMiddleware\n"
        "  5. Router\n"
        "response (innermost first):\n"
        "  1. Router\n"
        "  2. ExceptionMiddleware\n"
        "  3. GZipMiddleware\n"
        "  4. add_process_time\n"
        "  5. ServerErrorMiddleware"
    )


@pytest.mark.parametrize("not_an_app", [object(), Router(), hello, "examples.process_time:app"])
def test_describe_rejects_what_is_not_a_starlette_app(not_an_app: Any) -> None:
    with pytest.raises(
        TypeError, match=rf"describe\(\) takes a Starlette or FastAPI app, not {type(not_an_app).__name__}\."
    ):
        describe(not_an_app)


# python -m starlette_mw stack


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starlette_mw", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_cli_prints_the_stack() -> None:
    from examples.process_time import app

    result = run_cli("stack", "examples.process_time:app")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == f"{describe(app)}\n"
    assert result.stdout.startswith(
        "request (outermost first):\n"
        "  1. ErrorResponseMiddleware\n"
        "  2. add_server_header\n"
        "  3. add_process_time_header\n"
        "  4. GZipMiddleware\n"
        "  5. ExceptionMiddleware\n"
        "  6. Router\n"
        "response (innermost first):\n"
        "  1. Router\n"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples.process_time", "error: 'examples.process_time' is not of the form 'module:attribute'"),
        (":app", "error: ':app' is not of the form 'module:attribute', as in 'myproject.main:app'."),
        ("examples.process_time:", "is not of the form 'module:attribute'"),
        ("no_such_module_here:app", "error: could not import module 'no_such_module_here'"),
        ("examples.process_time:nope", "error: module 'examples.process_time' has no attribute 'nope'."),
        ("examples.process_time:app.nope", "has no attribute 'app.nope'."),
        ("examples.process_time:homepage", "error: describe() takes a Starlette or FastAPI app, not function."),
    ],
)
def test_cli_bad_target(target: str, message: str) -> None:
    result = run_cli("stack", target)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_without_a_command() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage: python -m starlette_mw" in result.stderr


def test_a_partial_is_named_for_the_function_it_wraps() -> None:
    import functools

    async def tagged(request: Request, call_next: CallNext, *, tag: str) -> Response:
        response = await call_next(request)
        response.headers["X-Tag"] = tag
        return response

    app = App(routes=[Route("/", hello)])
    app.middleware("http")(functools.partial(tagged, tag="a"))
    assert describe(app).layers[1] == "tagged"
