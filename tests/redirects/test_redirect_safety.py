"""No Location leaves the configured hosts, whatever the path or Host header holds; never a 500.

In-process with hostile ASGI scopes, then under a real uvicorn with raw requests, httpx, curl -L
and Chromium.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from browser import Browser
from redirect_calls import call
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wire import exchange

from starlette_mw import Redirect, RedirectMiddleware

LiveServer = Callable[..., str]
HOSTS = {"example.com", "www.example.com", "shop.example.net", "127.0.0.1", "localhost"}

RAW_PATHS = [
    "//evil.example",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example",
    "/\\/evil.example/",
    "/%2F%2Fevil.example",
    "/%2f%2fevil.example/",
    "/%2F/evil.example/",
    "/%5Cevil.example",
    "/%5C%5Cevil.example/",
    "/%09/evil.example/",
    "/\t/evil.example",
    "/%0D%0ALocation:%20http://evil.example/",
    "/%0d%0aSet-Cookie:%20x=1/",
    "/%00/",
    "/%FF%FE/",
    "/..//evil.example",
    "/.//evil.example/",
    "/%2E%2E/%2F%2Fevil.example",
    "/go//evil.example",
    "/go/%2F%2Fevil.example",
    "/go/%5Cevil.example",
    "/go/%5C%5Cevil.example",
    "/go/\\evil.example",
    "/go/http://evil.example/",
    "/go/%0D%0AX:%20y",
    "/go/%E2%80%AE%00",
    "/go/%20/evil.example",
    "/r//evil.example",
    "/r/%5C/evil.example",
    "/docs//evil.example/",
    "/shop//evil.example",
    "/shop/@evil.example",
    "/" + "a" * 10_000,
    "/go/" + "%2F" * 5_000,
]
HOST_HEADERS: list[bytes | None] = [
    b"example.com",
    b"www.example.com",
    b"evil.example",
    b"example.com@evil.example",
    b"example.com.evil.example",
    b"evil.example\r\nX-Injected: 1",
    b"example.com:99999",
    b"example.com:80:80",
    b"[::1]:80",
    b"\xff\xfe",
    b"example.com/evil",
    b"",
    None,
]


def rule_sets() -> list[dict[str, Any]]:
    capture = [
        Redirect("/go/{rest:path}", "/{rest}"),
        Redirect("/docs/{rest:path}", "/manual/{rest}"),
        Redirect(re.compile(r"/r(.*)"), "/{1}"),
        Redirect("/shop/{rest:path}", "https://shop.example.net/{rest}"),
    ]
    return [
        {"rules": capture},
        {"rules": capture, "trailing_slash": "strip"},
        {"rules": capture, "trailing_slash": "append"},
        {
            "rules": [Redirect.scheme("https"), Redirect.host("www.example.com", "example.com"), *capture],
            "hosts": ["example.com"],
            "trailing_slash": "strip",
        },
        {"rules": [Redirect(re.compile(r"/(?!new/)(.*)"), "/new/{1}", if_not_found=True)]},
    ]


def assert_stays_on_site(location: str | None) -> None:
    if location is None:
        return
    assert re.fullmatch(r"[!-~]+", location), location  # printable ASCII: no CR, LF, NUL, space or tab
    if location.startswith("/"):
        assert location == "/" or location[1] not in "/\\", location
    else:
        url = urlsplit(location)
        assert url.scheme in ("http", "https") and url.hostname in HOSTS and "@" not in url.netloc, location
    # As a client resolves it against a page of the site:
    assert httpx.URL("http://example.com/a/b").join(location).host in HOSTS, location


async def not_found(request: Request) -> Response:
    return PlainTextResponse("not here", status_code=404)


def make_app(options: dict[str, Any]) -> Starlette:
    return Starlette(routes=[Route("/", not_found)], middleware=[Middleware(RedirectMiddleware, **options)])


@pytest.mark.anyio
@pytest.mark.parametrize("raw", RAW_PATHS)
async def test_hostile_paths_and_hosts_in_process(raw: str) -> None:
    path = unquote(raw)
    for options in rule_sets():
        app = make_app(options)
        for host in HOST_HEADERS:
            for method in ("GET", "POST"):
                answer = await call(
                    app, path, method=method, host=host, raw_path=raw.encode("latin-1"), query=b"a=%0D%0A&b=\xff"
                )
                assert answer.status < 500
                assert_stays_on_site(answer.location)


@pytest.mark.anyio
async def test_a_capture_that_would_leave_the_site_passes_on() -> None:
    app = make_app({"rules": [Redirect("/go/{rest:path}", "/{rest}")]})
    assert (await call(app, "/go/x")).location == "/x"
    assert (await call(app, "//evil.example".replace("//", "/go//"))).location is None
    assert (await call(app, "/go/\\evil.example")).location == "/%5Cevil.example"


def raw_request(base: str, target: bytes, host: bytes) -> tuple[int, str | None]:
    """Send a request line as is (no client normalises it); the status and Location."""
    data = exchange(base, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    location = next((line.split(":", 1)[1].strip() for line in head[1:] if line.lower().startswith("location:")), None)
    return int(head[0].split()[1]), location


def test_hostile_requests_under_uvicorn(mw_live_server: LiveServer) -> None:
    for options in rule_sets():
        base = mw_live_server(make_app(options))
        for raw in RAW_PATHS:
            for host in (b"example.com", b"www.example.com", b"evil.example", b"example.com@evil.example"):
                status, location = raw_request(base, raw.encode("latin-1"), host)
                assert status < 500, (raw, host, status)
                assert_stays_on_site(location)


async def page(request: Request) -> Response:
    return PlainTextResponse(f"{request.method} {request.url.path}?{request.url.query} {await request.body()!r}")


def site(**options: Any) -> Starlette:
    rules = [
        Redirect.host("127.0.0.1", "localhost"),
        Redirect("/old", "/new"),
        Redirect("/blog/{slug}", "/posts/{slug}"),
        Redirect(
            re.compile(r".*/batch/class_based/"),
            "/redirected_endpoint?q={?question}&user={?user_name=unknown}",
            query="drop",
            methods=["GET"],
        ),
    ]
    return Starlette(
        routes=[Route("/{path:path}", page, methods=["GET", "POST"])],
        middleware=[Middleware(RedirectMiddleware, rules=rules, trailing_slash="strip", **options)],
    )


def test_httpx_follows_redirects_under_uvicorn(mw_live_server: LiveServer) -> None:
    base = mw_live_server(site())
    port = urlsplit(base).port
    with httpx.Client(base_url=base) as http:
        moved = http.get("/old/", params={"a": "1"}, follow_redirects=True)
        assert moved.text == "GET /new?a=1 b''"
        assert [(r.status_code, r.headers["location"]) for r in moved.history] == [
            (301, f"http://localhost:{port}/old/?a=1"),
            (301, "/new?a=1"),  # the slash stripped and the rule applied in one redirect
        ]
        posted = http.post("/old", content=b"body", follow_redirects=True)
        assert posted.text == "POST /new? b'body'"
        tutorial = http.get("/v1/batch/class_based/", params={"question": "why?"}, follow_redirects=True)
        assert tutorial.text == "GET /redirected_endpoint?q=why%3F&user=unknown b''"


def test_curl_follows_redirects_under_uvicorn(mw_live_server: LiveServer) -> None:
    curl = "/usr/bin/curl"
    if not os.access(curl, os.X_OK):
        pytest.fail(f"This test needs curl at {curl}: apt-get update && apt-get install -y curl.", pytrace=False)
    base = mw_live_server(site())
    port = urlsplit(base).port
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-L",
            "--max-redirs",
            "5",
            "-w",
            "\n%{url_effective} %{num_redirects}",
            f"{base}/blog/hello%20world/?x=1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, effective = result.stdout.rsplit("\n", 1)
    assert body == "GET /posts/hello world?x=1 b''"
    assert effective == f"http://localhost:{port}/posts/hello%20world?x=1 2"


@pytest.mark.browser
def test_chromium_follows_redirects(browser: Browser, mw_live_server: LiveServer) -> None:
    base = mw_live_server(site())
    port = urlsplit(base).port
    tab = browser.new_page()
    try:
        tab.goto(f"{base}/blog/caf%C3%A9?ref=mail")
        assert tab.run_js("return location.href") == f"http://localhost:{port}/posts/caf%C3%A9?ref=mail"
        assert tab.run_js("return document.body.innerText") == "GET /posts/café?ref=mail b''"
        posted = tab.run_js('const r = await fetch("/old", {method: "POST", body: "x=1"}); return await r.text();')
        assert posted == "POST /new? b'x=1'"
    finally:
        tab.close()
