"""Bad middleware options raise where they are given: `App(middleware=[...])`, `add_middleware`, `install()`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import starlette_mw
from starlette_mw import (
    App,
    CallNext,
    CORSMiddleware,
    HTTPMiddleware,
    MiddlewareMixin,
    Redirect,
    RedirectMiddleware,
    TimingMiddleware,
)

SUPPORT = Path(__file__).resolve().parent.parent / "support"
# What tests/support/bad_config_app.py builds for each BAD_CONFIG_ENTRY.
UVICORN_ENTRY_POINTS = ("App(middleware=[...])", "App().add_middleware", "install(FastAPI()).add_middleware")


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def passthrough(request: Request, call_next: CallNext) -> Response:
    return await call_next(request)


def sync_dispatch(request: Request, call_next: CallNext) -> Response:
    return PlainTextResponse("never")


class SyncDispatchTiming(TimingMiddleware):
    def dispatch(self, request: Request, call_next: CallNext) -> Response:  # type: ignore[override]
        return PlainTextResponse("never")


class NoDispatch(HTTPMiddleware):
    pass


class Tagged(TimingMiddleware):
    """A user's subclass with an option of its own, checked in its own `__init__`."""

    def __init__(self, app: Any, *, tag: str, **options: Any) -> None:
        if not tag:
            raise ValueError("Tagged needs a non-empty tag=, as in tag='api'.")
        super().__init__(app, **options)
        self.tag = tag


class MixedFastAPI(MiddlewareMixin, FastAPI):
    pass


# One bad option (or more) for each of the package's middleware and for subclasses of them.
BAD: dict[str, tuple[Any, dict[str, Any]]] = {
    "timing precision": (TimingMiddleware, {"precision": 9}),
    "timing no header": (TimingMiddleware, {"process_time_header": None, "server_timing": False}),
    "timing exclude": (TimingMiddleware, {"exclude": "health"}),
    "cors preset": (CORSMiddleware, {"preset": "nope"}),
    "cors origin": (CORSMiddleware, {"allow_origins": ["app.example.com"]}),
    "redirect trailing slash": (RedirectMiddleware, {"trailing_slash": "both"}),
    "redirect loop": (RedirectMiddleware, {"rules": [Redirect("/a", "/b"), Redirect("/b", "/a")]}),
    "http sync dispatch": (HTTPMiddleware, {"dispatch": sync_dispatch}),
    "http no dispatch": (HTTPMiddleware, {}),
    "http include": (HTTPMiddleware, {"dispatch": passthrough, "include": "/api/*/x"}),
    "subclass option": (Tagged, {"tag": ""}),
    "subclass sync dispatch": (SyncDispatchTiming, {}),
    "subclass without dispatch": (NoDispatch, {}),
}


def test_every_middleware_of_the_package_has_bad_options_above() -> None:
    exported = [getattr(starlette_mw, name) for name in starlette_mw.__all__]
    middleware = {obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseHTTPMiddleware)}
    assert middleware == {HTTPMiddleware, TimingMiddleware, CORSMiddleware, RedirectMiddleware}
    assert middleware <= {cls for cls, _ in BAD.values()}


def error_when_built(cls: Any, options: dict[str, Any]) -> Exception:
    """What the stack's build raises on a plain app: the error (and sentence) every entry point must raise."""
    app = Starlette(middleware=[Middleware(cls, **options)])
    with pytest.raises((TypeError, ValueError)) as info:
        app.build_middleware_stack()
    return info.value


def in_app_middleware(cls: Any, options: dict[str, Any]) -> None:
    App(middleware=[Middleware(cls, **options)])


def in_mixed_fastapi_middleware(cls: Any, options: dict[str, Any]) -> None:
    MixedFastAPI(middleware=[Middleware(cls, **options)])


def app_add_middleware(cls: Any, options: dict[str, Any]) -> None:
    app = App()
    with adds_nothing(app):
        app.add_middleware(cls, **options)


def install_with_middleware(cls: Any, options: dict[str, Any]) -> None:
    starlette_mw.install(Starlette(middleware=[Middleware(cls, **options)]))


def installed_starlette_add_middleware(cls: Any, options: dict[str, Any]) -> None:
    app = starlette_mw.install(Starlette())
    with adds_nothing(app):
        app.add_middleware(cls, **options)


def installed_fastapi_add_middleware(cls: Any, options: dict[str, Any]) -> None:
    app = starlette_mw.install(FastAPI())
    with adds_nothing(app):
        app.add_middleware(cls, **options)


def installed_app_with_middleware_add_middleware(cls: Any, options: dict[str, Any]) -> None:
    """`add_middleware` after `install()` on an app with middleware already: the earlier ones stay."""
    app = starlette_mw.install(Starlette())
    app.add_middleware(TimingMiddleware)
    with adds_nothing(app):
        app.add_middleware(cls, **options)


@contextlib.contextmanager
def adds_nothing(app: Starlette) -> Iterator[None]:
    before = list(app.user_middleware)
    try:
        yield
    finally:
        assert app.user_middleware == before


ENTRIES: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "App(middleware=[...])": in_app_middleware,
    "MiddlewareMixin+FastAPI(middleware=[...])": in_mixed_fastapi_middleware,
    "App().add_middleware": app_add_middleware,
    "install(Starlette(middleware=[...]))": install_with_middleware,
    "install(Starlette()).add_middleware": installed_starlette_add_middleware,
    "install(FastAPI()).add_middleware": installed_fastapi_add_middleware,
    "add_middleware after another": installed_app_with_middleware_add_middleware,
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("bad", BAD)
def test_each_entry_point_raises_the_error_of_the_build(entry: str, bad: str) -> None:
    cls, options = BAD[bad]
    expected = error_when_built(cls, options)
    with pytest.raises(type(expected)) as info:
        ENTRIES[entry](cls, options)
    assert str(info.value) == str(expected)


def test_the_decorator_on_an_app_raises_at_decoration() -> None:
    app = App()
    with pytest.raises(TypeError, match="is not an 'async def' function"):
        app.middleware("http")(sync_dispatch)  # type: ignore[type-var]
    assert app.user_middleware == []


def test_good_options_are_accepted_and_the_app_serves() -> None:
    app = App(routes=[Route("/", hello)])
    app.add_middleware(TimingMiddleware, precision=2)
    app.add_middleware(CORSMiddleware, preset="public")
    app.add_middleware(HTTPMiddleware, dispatch=passthrough, exclude="/health")
    redirects = Middleware(RedirectMiddleware, rules=[Redirect("/a", "/")])
    installed = starlette_mw.install(FastAPI(routes=[Route("/", hello)], middleware=[redirects]))
    installed.add_middleware(TimingMiddleware)
    for served in (app, installed):
        with TestClient(served) as client:
            response = client.get("/")
        assert response.status_code == 200
        assert "x-process-time" in response.headers


def test_other_middleware_is_not_built_at_registration() -> None:
    built: list[object] = []

    class Counted:
        def __init__(self, app: Any) -> None:
            built.append(self)
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    app = App(middleware=[Middleware(Counted)])
    app.add_middleware(Counted)
    starlette_mw.install(Starlette(middleware=[Middleware(Counted)])).add_middleware(Counted)
    assert built == []
    app.build_middleware_stack()
    assert len(built) == 2


def test_the_cors_inside_redirects_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    # Checking builds the middleware around an app with no CORS inside it: the warning comes once, at startup.
    app = App(
        routes=[Route("/", hello)],
        middleware=[Middleware(RedirectMiddleware, rules=[Redirect("/a", "/")]), Middleware(CORSMiddleware)],
    )
    assert not [record for record in caplog.records if record.name == "starlette_mw"]
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    warnings = [record for record in caplog.records if record.name == "starlette_mw"]
    assert len(warnings) == 1
    assert "RedirectMiddleware is outside CORSMiddleware" in warnings[0].getMessage()


def test_a_plain_app_without_install_still_fails_only_when_built() -> None:
    # Starlette gives no hook at add_middleware; the README says so and points to App and install().
    app = Starlette()
    app.add_middleware(TimingMiddleware, precision=9)
    with pytest.raises(ValueError, match="precision=9"):
        app.build_middleware_stack()


@pytest.mark.parametrize("entry", UVICORN_ENTRY_POINTS)
def test_uvicorn_does_not_start_an_app_with_a_bad_option(entry: str, tmp_path: Path) -> None:
    """Real uvicorn, default options (so `--lifespan auto`): it exits with the sentence and never listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "uvicorn.log"
    command = [
        sys.executable,
        *("-m", "uvicorn", "--app-dir", str(SUPPORT), "bad_config_app:app"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    listened = exited = False
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "BAD_CONFIG_ENTRY": entry}
        )
    try:
        # A guard against a hang, not a time being measured: the process either exits or listens.
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                listened = True
                break
            time.sleep(0.05)
        exited = process.poll() is not None
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=15)
    output_text = log.read_text()
    assert not listened, output_text
    assert exited, output_text
    assert process.returncode != 0, output_text
    assert "precision=9 must be a whole number of decimals from 0 to 6" in output_text
    assert "Application startup complete" not in output_text
