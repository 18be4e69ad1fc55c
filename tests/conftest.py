from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import uvicorn
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from browser import Browser, TwoOrigins


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests run on both of anyio's backends."""
    return str(request.param)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LiveServer = Callable[[ASGIApp], str]


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """Start an app under a real uvicorn on a free loopback port; returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: ASGIApp, **config: object) -> str:
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **config)  # type: ignore[arg-type]
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the browser gets the `browser` marker, so `-m "not browser"` leaves it out."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()) and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's headless Chromium under Playwright, with a fresh profile, for the whole session."""
    # Imported here so that a missing Playwright fails the browser tests, not the whole run.
    try:
        from browser import Browser, require_chromium
    except ImportError as error:
        pytest.fail(f"The browser tests need Playwright ({error}): python3 -m pip install -e '.[test]'.", pytrace=False)

    require_chromium()
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


@pytest.fixture
def two_origins(browser: Browser, live_server: LiveServer) -> Iterator[TwoOrigins]:
    """A page origin with a page loaded from it, and `serve(app)` for the app's origin."""
    from browser import TwoOrigins, page_app

    # Both servers listen on 127.0.0.1; the page is addressed by name, so that its origin differs
    # from the app's in host as well as port.
    page_origin = live_server(page_app).replace("http://127.0.0.1:", "http://localhost:")
    page = browser.new_page()
    try:
        page.goto(page_origin + "/")
        yield TwoOrigins(serve=live_server, page=page, page_origin=page_origin)
    finally:
        page.close()
