"""TimingMiddleware as a page on another origin sees it in Chromium: `fetch()` and Resource Timing."""

from __future__ import annotations

from typing import Any

import pytest
from browser import TwoOrigins
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, TimingAllowOrigin, TimingMiddleware, record_timing, timing

pytestmark = pytest.mark.browser

# Fetch `path` from the app's origin, read the body, and return the X-Process-Time header that
# fetch() exposes and the serverTiming of the request's Resource Timing entry.
FETCH = """
const url = api + path;
const response = await fetch(url, { mode });
await response.text();
const entry = await resourceEntry(url);
return {
  status: response.status,
  processTime: response.headers.get("X-Process-Time"),
  serverTiming: entry.serverTiming.map(({ name, duration, description }) => [name, duration, description]),
};
"""


async def users(request: Request) -> Response:
    with timing(request, "db", "query users"):
        pass
    record_timing(request, "cache", 0.0025, "miss")
    return PlainTextResponse("users")


async def boom(request: Request) -> Response:
    record_timing(request, "before", 0.001, "then it failed")
    raise RuntimeError("endpoint failed")


async def accented(request: Request) -> Response:
    record_timing(request, "i18n", 0.001, "café")
    return PlainTextResponse("ok")


def serve(two_origins: TwoOrigins, timing_allow_origin: TimingAllowOrigin) -> str:
    """The app on its own origin; Starlette's CORSMiddleware lets the page read it and its X-Process-Time."""
    app = App(
        routes=[Route("/users", users), Route("/boom", boom), Route("/accented", accented)],
        middleware=[
            Middleware(CORSMiddleware, allow_origins=[two_origins.page_origin], expose_headers=["X-Process-Time"]),
            Middleware(TimingMiddleware, timing_allow_origin=timing_allow_origin),
        ],
    )
    return two_origins.serve(app)


def fetch(two_origins: TwoOrigins, api: str, path: str, mode: str = "cors") -> dict[str, Any]:
    result: dict[str, Any] = two_origins.run_js(FETCH, api=api, path=path, mode=mode)
    return result


def test_a_page_on_another_origin_reads_the_metrics_and_the_header(two_origins: TwoOrigins) -> None:
    api = serve(two_origins, timing_allow_origin=two_origins.page_origin)
    result = fetch(two_origins, api, "/users")
    assert result["status"] == 200
    assert float(result["processTime"]) > 0
    [app, db, cache] = result["serverTiming"]
    assert app[0] == "app" and app[2] == ""
    # The browser read the same measurement as X-Process-Time (seconds) in milliseconds.
    assert app[1] == pytest.approx(float(result["processTime"]) * 1000, abs=0.002)
    assert (db[0], db[2]) == ("db", "query users")
    assert cache == ["cache", 2.5, "miss"]


@pytest.mark.parametrize(
    "allow",
    [
        "*",
        pytest.param(lambda request: request.headers.get("origin"), id="function reflecting Origin"),
    ],
)
def test_wildcard_and_function_timing_allow_origin(two_origins: TwoOrigins, allow: TimingAllowOrigin) -> None:
    api = serve(two_origins, timing_allow_origin=allow)
    assert [metric[0] for metric in fetch(two_origins, api, "/users")["serverTiming"]] == ["app", "db", "cache"]


def test_without_timing_allow_origin_the_browser_hides_the_metrics(two_origins: TwoOrigins) -> None:
    api = serve(two_origins, timing_allow_origin=None)
    result = fetch(two_origins, api, "/users")
    # CORS lets the page read the response and the exposed header, but not the metrics.
    assert result["status"] == 200
    assert float(result["processTime"]) > 0
    assert result["serverTiming"] == []


def test_the_500_of_a_failing_endpoint_carries_the_metrics(two_origins: TwoOrigins) -> None:
    api = serve(two_origins, timing_allow_origin=two_origins.page_origin)
    # Starlette's CORSMiddleware does not reach the 500 (ServerErrorMiddleware sends it), so the
    # page fetches it without CORS; Resource Timing needs only Timing-Allow-Origin.
    result = fetch(two_origins, api, "/boom", mode="no-cors")
    assert result["status"] == 0  # opaque
    assert [(name, description) for name, _, description in result["serverTiming"]] == [
        ("app", ""),
        ("before", "then it failed"),
    ]


def test_non_ascii_descriptions_reach_the_page_as_latin_1(two_origins: TwoOrigins) -> None:
    api = serve(two_origins, timing_allow_origin=two_origins.page_origin)
    [_, i18n] = fetch(two_origins, api, "/accented")["serverTiming"]
    # The bytes are UTF-8; Chromium decodes header values as Latin-1 (see docs/timing.md).
    assert i18n[2] == "café".encode().decode("latin-1")
