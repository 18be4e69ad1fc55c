"""The browser fixtures work, and show what Chromium enforces: CORS on fetch(), Timing-Allow-Origin
on Server-Timing. The TimingMiddleware and CORS preset tests build on the same fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import CHROMIUM_FLAGS, Browser, JSError, TwoOrigins, require_chromium
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

pytestmark = pytest.mark.browser

SERVER_TIMING = b'db;dur=12.5;desc="query", app;dur=20'
FETCH = """
const response = await fetch(api + "/");
return { status: response.status, body: await response.text(), custom: response.headers.get("X-Custom"),
         other: response.headers.get("X-Other") };
"""


def make_app(*middleware: Middleware) -> tuple[Starlette, list[str]]:
    """An app whose one route answers "hello" with two custom headers, and the origins it was called from."""
    calls: list[str] = []

    async def hello(request: Request) -> PlainTextResponse:
        calls.append(request.headers.get("origin", ""))
        return PlainTextResponse("hello", headers={"X-Custom": "custom", "X-Other": "other"})

    return Starlette(routes=[Route("/", hello)], middleware=list(middleware)), calls


class ServerTiming:
    """Adds Server-Timing, and Timing-Allow-Origin if given, to every HTTP response."""

    def __init__(self, app: ASGIApp, *, timing_allow_origin: str | None) -> None:
        self.app = app
        self.headers = [(b"server-timing", SERVER_TIMING)]
        if timing_allow_origin is not None:
            self.headers.append((b"timing-allow-origin", timing_allow_origin.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_timing)


def test_chromium_runs_with_the_project_flags_and_a_fresh_profile(browser: Browser) -> None:
    # The browser process is the one without --type= that uses this session's profile.
    profile = f"--user-data-dir={browser.profile_dir}"
    command_lines = [path.read_bytes().split(b"\0")[:-1] for path in Path("/proc").glob("[0-9]*/cmdline")]
    [command] = [
        [arg.decode() for arg in line]
        for line in command_lines
        if profile.encode() in line and not any(arg.startswith(b"--type=") for arg in line)
    ]

    # Debian's /usr/bin/chromium execs the real binary with the flags of /etc/chromium.d/ first.
    assert command[0] == "/usr/lib/chromium/chromium"
    assert command[-len(browser.args) :] == list(browser.args)
    assert browser.args[: len(CHROMIUM_FLAGS)] == CHROMIUM_FLAGS
    assert "--headless" in browser.args
    assert not any(arg.startswith("--disable-web-security") for arg in command)


def test_a_missing_chromium_fails_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        require_chromium(str(tmp_path / "chromium"))


def test_cross_origin_fetch_without_cors_is_an_opaque_type_error(two_origins: TwoOrigins) -> None:
    app, calls = make_app()
    api = two_origins.serve(app)

    with pytest.raises(JSError) as raised:
        two_origins.run_js(FETCH, api=api)

    # The page learns nothing but "TypeError: Failed to fetch"; only the console says why.
    assert (raised.value.name, raised.value.message) == ("TypeError", "Failed to fetch")
    assert "No 'Access-Control-Allow-Origin' header" in two_origins.page.wait_for_console("blocked by CORS policy")
    # A simple GET is still sent and answered: CORS hides the response, it does not stop the request.
    assert calls == [two_origins.page_origin]


def test_cross_origin_fetch_with_cors_middleware_reads_exposed_headers(two_origins: TwoOrigins) -> None:
    app, calls = make_app(
        Middleware(CORSMiddleware, allow_origins=[two_origins.page_origin], expose_headers=["X-Custom"])
    )
    api = two_origins.serve(app)

    result = two_origins.run_js(FETCH, api=api)

    assert result == {"status": 200, "body": "hello", "custom": "custom", "other": None}
    assert calls == [two_origins.page_origin]


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        pytest.param(
            True,
            [
                {"name": "db", "duration": 12.5, "description": "query"},
                {"name": "app", "duration": 20, "description": ""},
            ],
            id="timing-allow-origin",
        ),
        # Chromium records the entry, with responseStatus, but zeroes serverTiming, the sizes and
        # the connection timings: CORS alone does not pass the timing allow check.
        pytest.param(False, [], id="no-timing-allow-origin"),
    ],
)
def test_server_timing_reaches_the_page_only_with_timing_allow_origin(
    two_origins: TwoOrigins, allowed: bool, expected: list[dict[str, object]]
) -> None:
    allow = two_origins.page_origin if allowed else None
    app, _ = make_app(
        Middleware(CORSMiddleware, allow_origins=[two_origins.page_origin]),
        Middleware(ServerTiming, timing_allow_origin=allow),
    )
    api = two_origins.serve(app)

    entry = two_origins.run_js(
        """
        const response = await fetch(api + "/");
        await response.text();
        return await resourceEntry(response.url);
        """,
        api=api,
    )

    assert entry["initiatorType"] == "fetch"
    assert entry["responseStatus"] == 200
    assert entry["serverTiming"] == expected
    assert (entry["transferSize"] > 0) is allowed


@pytest.mark.anyio
async def test_the_browser_leaves_the_test_threads_event_loop_alone(browser: Browser) -> None:
    # Playwright's sync API would leave its loop marked as running here, and this test could not start.
    assert browser.version.split(".")[0].isdigit()
