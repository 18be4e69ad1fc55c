"""Each CORS preset in a real Chromium: what a page on another origin may and may not do.

The page is on http://localhost:<port>. The app is addressed as http://localhost:<its port>, the
same site but another origin (as a front end and its API on sibling subdomains are), so that
cookies go with `credentials: "include"` wherever CORS allows them; from 127.0.0.1, a
different site, Chromium would not store them at all. A disallowed origin is a sandboxed iframe
in the page, whose requests carry `Origin: null`, as an attacker's frame can make them.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser import TwoOrigins
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware, TimingMiddleware

pytestmark = pytest.mark.browser


async def login(request: Request) -> Response:
    response = PlainTextResponse("signed in")
    response.set_cookie("session", "s3cret", samesite="lax")
    return response


async def whoami(request: Request) -> Response:
    return PlainTextResponse(request.cookies.get("session", "anonymous"), headers={"X-Total-Count": "3"})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def serve(two_origins: TwoOrigins, **cors: Any) -> str:
    app = App(
        routes=[Route("/login", login), Route("/me", whoami, methods=["GET", "PUT", "DELETE"]), Route("/boom", boom)],
        middleware=[Middleware(CORSMiddleware, **cors), Middleware(TimingMiddleware)],
    )
    return two_origins.serve(app).replace("http://127.0.0.1:", "http://localhost:")


# Everything a page tries, each outcome as a value: the response's status and what it can read,
# or the error fetch() rejected with.
SCRIPT = """
async function attempt(url, init) {
  try {
    const response = await fetch(url, init);
    return { status: response.status, body: await response.text(),
             total: response.headers.get("X-Total-Count"), elapsed: response.headers.get("X-Process-Time") };
  } catch (error) {
    return { error: error.name };
  }
}
function fromNullOrigin(url) {
  return new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.sandbox = "allow-scripts";
    frame.srcdoc = `<script>fetch(${JSON.stringify(url)}).then((r) => "read " + r.status, (e) => e.name)
      .then((outcome) => parent.postMessage(outcome, "*"))</scr` + `ipt>`;
    addEventListener("message", (event) => { frame.remove(); resolve(event.data); }, { once: true });
    document.body.append(frame);
  });
}
return {
  simple: await attempt(api + "/me"),
  preflighted: await attempt(api + "/me", { method: "PUT", headers: { "Content-Type": "application/json" },
                                            body: "{}" }),
  login: await attempt(api + "/login", { credentials: "include" }),
  withCookie: await attempt(api + "/me", { credentials: "include" }),
  delete: await attempt(api + "/me", { method: "DELETE", credentials: "include" }),
  customHeader: await attempt(api + "/me", { headers: { "X-Custom": "1" } }),
  failing: await attempt(api + "/boom"),
  nullOrigin: await fromNullOrigin(api + "/me"),
};
"""

READ = {"status": 200, "body": "anonymous", "total": None, "elapsed": None}
BLOCKED = {"error": "TypeError"}


def outcomes(two_origins: TwoOrigins, **cors: Any) -> dict[str, Any]:
    result: dict[str, Any] = two_origins.run_js(SCRIPT, api=serve(two_origins, **cors))
    for name, value in result.items():
        if isinstance(value, dict) and value.get("elapsed") is not None:
            result[name] = {**value, "elapsed": "present"}
    return result


def test_development(two_origins: TwoOrigins) -> None:
    result = outcomes(two_origins, preset="development")

    assert result == {
        "simple": {**READ, "elapsed": "present"},
        "preflighted": {**READ, "elapsed": "present"},
        "login": {**READ, "body": "signed in", "elapsed": "present"},
        "withCookie": {**READ, "body": "s3cret", "elapsed": "present"},
        "delete": {**READ, "body": "s3cret", "elapsed": "present"},
        "customHeader": {**READ, "elapsed": "present"},  # fetch sends cookies cross-origin only when asked
        "failing": {"status": 500, "body": "Internal Server Error", "total": None, "elapsed": "present"},
        "nullOrigin": "TypeError",
    }


def test_public(two_origins: TwoOrigins) -> None:
    result = outcomes(two_origins, preset="public")

    assert result == {
        "simple": {**READ, "elapsed": "present"},
        # JSON is not a CORS-safelisted content type, so PUT is preflighted, and refused: GET and HEAD only.
        "preflighted": BLOCKED,
        # No Access-Control-Allow-Credentials: the browser refuses the response, so no cookie is stored.
        "login": BLOCKED,
        "withCookie": BLOCKED,
        "delete": BLOCKED,
        "customHeader": {**READ, "elapsed": "present"},  # any request header, for GET
        "failing": {"status": 500, "body": "Internal Server Error", "total": None, "elapsed": "present"},
        "nullOrigin": "read 200",  # any origin
    }


def test_first_party(two_origins: TwoOrigins) -> None:
    result = outcomes(
        two_origins, preset="first-party", allow_origins=[two_origins.page_origin], expose_headers=["X-Total-Count"]
    )

    signed_in = {**READ, "body": "s3cret", "total": "3", "elapsed": "present"}
    assert result == {
        "simple": {**READ, "total": "3", "elapsed": "present"},
        "preflighted": {**READ, "total": "3", "elapsed": "present"},
        "login": {**READ, "body": "signed in", "elapsed": "present"},
        "withCookie": signed_in,
        "delete": signed_in,
        "customHeader": BLOCKED,  # not among the usual headers
        "failing": {"status": 500, "body": "Internal Server Error", "total": None, "elapsed": "present"},
        "nullOrigin": "TypeError",
    }


def test_strict(two_origins: TwoOrigins) -> None:
    result = outcomes(two_origins, preset="strict", allow_origins=[two_origins.page_origin])

    assert result == {
        "simple": {**READ, "elapsed": "present"},
        "preflighted": BLOCKED,
        "login": BLOCKED,
        "withCookie": BLOCKED,
        "delete": BLOCKED,
        "customHeader": BLOCKED,
        "failing": {"status": 500, "body": "Internal Server Error", "total": None, "elapsed": "present"},
        "nullOrigin": "TypeError",
    }


def test_server_timing_reaches_an_allowed_page(two_origins: TwoOrigins) -> None:
    api = serve(two_origins, preset="strict", allow_origins=[two_origins.page_origin])

    entry = two_origins.run_js(
        """
        const response = await fetch(api + "/me");
        await response.text();
        return await resourceEntry(response.url);
        """,
        api=api,
    )

    # Timing-Allow-Origin, added for the allowed page: without it Chromium gives an empty list.
    assert [metric["name"] for metric in entry["serverTiming"]] == ["app"]
