from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import Phase, settings

if TYPE_CHECKING:
    from browser import Browser, TwoOrigins

# Helpers that are not tests (a raw ASGI peer, the browser, apps that uvicorn loads in a process
# of their own) live in tests/support/; the tests import them by name, as `from wire import exchange`.
sys.path.insert(0, str(Path(__file__).parent / "support"))

# The plugin's tests run pytest in a subprocess, as a user would. (The package's own plugin,
# with `mw_client`, `mw_live_server` and the rest, loads through its entry point.)
pytest_plugins = ["pytester"]

# Property and fuzz tests (test_properties.py, test_fuzz.py): a short, reproducible run by default,
# as in CI; `--hypothesis-profile=long` for many more random examples. No example database: nothing
# is written into the repository, and a failure prints the example (and a blob to reproduce it).
# No target phase: these tests call no `hypothesis.target()`, and the phase's lazy import, which
# pytest rewrites while hypothesis has raised the recursion limit, trips CPython 3.11.7's
# SystemError "AST constructor recursion depth mismatch" (see python/cpython#106905).
PHASES = [phase for phase in Phase if phase is not Phase.target]
settings.register_profile("default", max_examples=100, derandomize=True, database=None, deadline=None, phases=PHASES)
settings.register_profile("long", max_examples=5_000, database=None, deadline=None, print_blob=True, phases=PHASES)
settings.load_profile("default")


@pytest.fixture(params=["eager", "ordinary"], ids=["eager-start", "ordinary-start"])
def engine_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the app's task started eagerly (as on this Python), then the ordinary way:
    the fallback taken where the private names Python 3.11 needs are missing, or a task factory is set."""
    from starlette_mw._engine import tasks as _tasks

    if request.param == "ordinary":
        monkeypatch.setattr(_tasks, "EAGER_START", False)
    elif not _tasks.EAGER_START:
        pytest.skip("this Python has no eager start: the ordinary start is its only one")
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests run on both of anyio's backends."""
    return str(request.param)


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
def two_origins(browser: Browser, mw_live_server: Callable[..., str]) -> Iterator[TwoOrigins]:
    """A page origin with a page loaded from it, and `serve(app)` for the app's origin."""
    from browser import TwoOrigins, page_app

    # Both servers listen on 127.0.0.1; the page is addressed by name, so that its origin differs
    # from the app's in host as well as port.
    page_origin = mw_live_server(page_app).replace("http://127.0.0.1:", "http://localhost:")
    page = browser.new_page()
    try:
        page.goto(page_origin + "/")
        yield TwoOrigins(serve=mw_live_server, page=page, page_origin=page_origin)
    finally:
        page.close()
