"""A real browser for tests: Debian's Chromium, driven by Playwright, and two loopback origins.

Playwright runs on a thread of its own, with its async API on that thread's event loop, and the
tests call it through the blocking methods here. Playwright's sync API would be simpler, but
between its calls it leaves its event loop marked as running on the calling thread, so every
later `asyncio.run()` on the main thread, and with it every anyio test on asyncio, would fail
with "cannot be called from a running event loop" once a session-wide browser had started.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.async_api import Browser as AsyncBrowser
from playwright.async_api import BrowserContext, ConsoleMessage, Playwright, async_playwright
from playwright.async_api import Page as AsyncPage
from starlette.types import ASGIApp, Receive, Scope, Send

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (Debian's package)"

# The project's standard flags, and nothing else of ours. `ignore_default_args=True` drops
# Playwright's own ~30 switches (some change what the browser enforces, such as
# --disable-features=ThirdPartyStoragePartitioning); Debian's /usr/bin/chromium wrapper still
# puts the flags from /etc/chromium.d/ in front of these.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# A browser call that takes longer than this has hung; fail the test rather than wait for
# pytest-timeout. Never reached otherwise.
TIMEOUT = 15.0

T = TypeVar("T")


def require_chromium(executable: str = CHROMIUM) -> None:
    """Fail the test, never skip it, when the browser is not installed."""
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"The browser tests need Chromium at {executable}, which is missing: {INSTALL_HINT}.", pytrace=False
        )


class JSError(Exception):
    """A JavaScript exception thrown by a script run in the page: `name` is its class, e.g. "TypeError"."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class Browser:
    """A headless Chromium with a fresh profile in `profile_dir`, for the whole test session."""

    def __init__(self, profile_dir: Path, *, executable: str = CHROMIUM) -> None:
        self.profile_dir = profile_dir
        # Playwright passes only these; the last three are what its pipe connection and a
        # non-persistent launch need, which it would otherwise add itself.
        self.args = (
            *CHROMIUM_FLAGS,
            "--headless",
            f"--user-data-dir={profile_dir}",
            "--remote-debugging-pipe",
            "--no-startup-window",
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="playwright", daemon=True)
        self._thread.start()
        self._playwright: Playwright | None = None
        self._browser: AsyncBrowser | None = None
        try:
            self._playwright = self.call(async_playwright().start())
            self._browser = self.call(
                self._playwright.chromium.launch(
                    executable_path=executable, args=list(self.args), ignore_default_args=True, headless=True
                )
            )
        except BaseException:
            self.close()
            raise

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        """Run a coroutine on Playwright's thread and return its result."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self._loop)
        # The backstop is for a stuck loop; wait_for cancels a slow call first.
        return future.result(timeout + 5)

    def run(self, function: Callable[[AsyncBrowser], Coroutine[Any, Any, T]], timeout: float = TIMEOUT) -> T:
        """Run `await function(browser)` with Playwright's async `Browser`, on its thread."""
        if self._browser is None:
            raise RuntimeError("The browser is closed.")
        return self.call(function(self._browser), timeout)

    @property
    def version(self) -> str:
        return self.run(_version)

    def new_page(self) -> Page:
        """A page in a new browser context: its own cookies, cache and storage."""
        page = Page(self)
        self.run(page._open)
        return page

    def close(self) -> None:
        try:
            if self._browser is not None:
                self.call(self._browser.close())
            if self._playwright is not None:
                self.call(self._playwright.stop())
        finally:
            self._browser = self._playwright = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=TIMEOUT)
            self._loop.close()


async def _version(browser: AsyncBrowser) -> str:
    return browser.version


class Page:
    """One tab. `console` collects what the page logs, including the browser's own CORS errors."""

    def __init__(self, browser: Browser) -> None:
        self._browser = browser
        self._context: BrowserContext | None = None
        self._page: AsyncPage | None = None
        self.console: list[str] = []
        self._console_changed = threading.Condition()

    async def _open(self, browser: AsyncBrowser) -> None:
        # On Playwright's thread: its objects may be used from there only.
        self._context = await browser.new_context()
        self._page = await self._context.new_page()
        self._page.on("console", self._log)

    @property
    def _opened(self) -> AsyncPage:
        if self._page is None:
            raise RuntimeError("The page is closed.")
        return self._page

    def _log(self, message: ConsoleMessage) -> None:
        with self._console_changed:
            self.console.append(f"{message.type}: {message.text}")
            self._console_changed.notify_all()

    def wait_for_console(self, text: str, timeout: float = TIMEOUT) -> str:
        """The first console message containing `text`, once the page has logged it."""

        def find() -> str | None:
            return next((line for line in self.console if text in line), None)

        with self._console_changed:
            if self._console_changed.wait_for(lambda: find() is not None, timeout):
                return find() or ""
        raise AssertionError(f"The page logged nothing containing {text!r} within {timeout} s: {self.console}")

    def goto(self, url: str) -> None:
        self._browser.call(self._opened.goto(url))

    def run_js(self, script: str, /, **args: Any) -> Any:
        """Run `script`, the body of an async function, in the page, and return what it returns.

        Each keyword argument is a variable of the script, passed as JSON. A JavaScript exception
        the script does not catch is raised as `JSError`.
        """
        for name in args:
            if not name.isidentifier() or not name.isascii():
                raise ValueError(f"run_js argument {name!r} is not a JavaScript identifier; rename it.")
        # The script's exception comes back as a value, with its class name intact, rather than
        # parsed out of the message of Playwright's error.
        function = f"""async (args) => {{
  try {{
    return {{ value: await (async ({{{", ".join(args)}}}) => {{
{script}
    }})(args) }};
  }} catch (error) {{
    return {{ error: {{ name: String(error?.name ?? typeof error), message: String(error?.message ?? error) }} }};
  }}
}}"""
        outcome = self._browser.call(self._opened.evaluate(function, args))
        if "error" in outcome:
            raise JSError(outcome["error"]["name"], outcome["error"]["message"])
        return outcome.get("value")

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page to `path`."""
        self._browser.call(self._opened.screenshot(path=str(path), full_page=True))

    def close(self) -> None:
        if self._context is not None:
            self._browser.call(self._context.close())
        self._context = self._page = None


# A blank page for the page origin. `resourceEntry(url)` waits, without polling, until the
# browser has recorded the resource timing entry for `url`: the entry for a fetch is added when
# its body has been read, which can be after the script's `await` has already resumed.
PAGE_HTML = b"""<!doctype html>
<meta charset="utf-8">
<title>page origin</title>
<script>
function resourceEntry(url) {
  return new Promise((resolve) => {
    const observer = new PerformanceObserver(() => {
      const entry = performance.getEntriesByName(url, "resource").at(-1);
      if (entry) {
        observer.disconnect();
        resolve(entry.toJSON());
      }
    });
    observer.observe({ type: "resource", buffered: true });
  });
}
</script>
"""


async def page_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The page origin's server: `PAGE_HTML` at every path."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(PAGE_HTML)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PAGE_HTML})


class TwoOrigins:
    """An app origin and a page origin on loopback, and a page loaded from the page origin.

    `page_origin` is http://localhost:<port>, and `serve(app)` starts the app on
    http://127.0.0.1:<another port>, so the two differ in host and port: cross-origin, and
    cross-site too, as a front end and its API on different domains are. `run_js` runs a script in
    the page, where `fetch()` to the app's origin is a real cross-origin request.
    """

    def __init__(self, *, serve: Callable[[ASGIApp], str], page: Page, page_origin: str) -> None:
        self._serve = serve
        self.page = page
        self.page_origin = page_origin

    def serve(self, app: ASGIApp) -> str:
        """Start `app` under uvicorn and return its origin, e.g. "http://127.0.0.1:40123"."""
        return self._serve(app)

    def run_js(self, script: str, /, **args: Any) -> Any:
        """`Page.run_js` in the page loaded from `page_origin`."""
        return self.page.run_js(script, **args)
