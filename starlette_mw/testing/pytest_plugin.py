"""pytest fixtures for testing a middleware stack, loaded through the `pytest11` entry point.

Every fixture name starts with `mw_`, so none clashes with a project's own `client`; turn the
plugin off with `-p no:starlette_mw`. Clients, servers and tracers are built by factories, so a
test can have several, and each is closed when the test ends. Importing this module imports
neither uvicorn nor an HTTP client: they load when a fixture first needs them.

    def test_redirect(mw_client):
        client = mw_client(app)
        assert_redirect(client.get("/old"), "/new", status=301)  # a GET to a permanent redirect
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from starlette_mw.testing.tracing import Trace, trace

__all__ = ["mw_async_client", "mw_client", "mw_live_server", "mw_trace"]


@pytest.fixture
def mw_client() -> Iterator[Callable[..., Any]]:
    """`mw_client(app, *, raise_server_exceptions=True, follow_redirects=False, **options)`: a started TestClient.

    The app's lifespan has run its startup; its shutdown runs when the test ends. Redirects are
    not followed unless asked, so a test sees them. `raise_server_exceptions=False` gives the 500
    a browser would get instead of the exception.
    """
    from starlette_mw.testing.clients import testclient_class

    test_client = testclient_class()
    with ExitStack() as clients:  # each closed, the last made first, even if one fails to close

        def make(
            app: ASGIApp, *, raise_server_exceptions: bool = True, follow_redirects: bool = False, **options: Any
        ) -> Any:
            client = test_client(
                app, raise_server_exceptions=raise_server_exceptions, follow_redirects=follow_redirects, **options
            )
            return clients.enter_context(client)

        yield make


@pytest.fixture
def mw_async_client() -> Callable[..., AbstractAsyncContextManager[Any]]:
    """`async with mw_async_client(app, **options) as client`: an httpx AsyncClient on ASGITransport.

    Same options as `mw_client`; the app's lifespan runs around the block (`run_lifespan=False`
    to skip it). Uses httpx2 when installed, as Starlette's TestClient does, otherwise httpx.
    """
    from starlette_mw.testing.clients import async_client

    return async_client


@pytest.fixture
def mw_live_server() -> Iterator[Callable[..., str]]:
    """`mw_live_server(app, **uvicorn_options) -> base URL`: the app under real uvicorn on loopback.

    Stops when the test ends, as uvicorn does on Ctrl-C (requests in flight finish, lifespan
    shutdown runs). Fails with the reason if uvicorn cannot start.
    """
    from starlette_mw.testing.live import LiveServer

    with ExitStack() as servers:

        def start(app: ASGIApp, **options: Any) -> str:
            server = LiveServer(app, **options)
            servers.callback(server.stop)
            return server.url

        yield start


@pytest.fixture
def mw_trace() -> Callable[[Starlette], Trace]:
    """`mw_trace(app) -> Trace`: records the order of the app's middleware layers per request.

    Call it before the app's first request; `trace.last` is the latest request's order.
    """
    return trace
