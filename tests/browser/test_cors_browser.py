"""Each CORS preset in a real Chromium: what a page on another origin may and may not do.

And CORS with RedirectMiddleware: which order lets a page follow a redirect, and what a redirect
to another origin does to the `Origin` header.

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
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware, Redirect, RedirectMiddleware, TimingMiddleware

pytestmark = pytest.mark.browser


async def login(request: Request) -> Response:
    response = PlainTextResponse("signed in")
    response.set_cookie("session", "s3cret", samesite="lax")
    return response


async def whoami(request: Request) -> Response:
    return PlainTextResponse(request.cookies.get("session", "anonymous"), headers={"X-Total-Count": "3"})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def serve_on_localhost(two_origins: TwoOrigins, app: Starlette) -> str:
    """Start `app` and return its origin as http://localhost:<port>: the same site as the page, another origin."""
    return two_origins.serve(app).replace("http://127.0.0.1:", "http://localhost:")


def serve(two_origins: TwoOrigins, **cors: Any) -> str:
    app = App(
        routes=[Route("/login", login), Route("/me", whoami, methods=["GET", "PUT", "DELETE"]), Route("/boom", boom)],
        middleware=[Middleware(CORSMiddleware, **cors), Middleware(TimingMiddleware)],
    )
    return serve_on_localhost(two_origins, app)


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


@pytest.mark.parametrize("app_class", [App, Starlette])
@pytest.mark.parametrize("cors_outside", [True, False], ids=["CORS-outside-timing", "timing-outside-CORS"])
def test_server_timing_reaches_an_allowed_page(
    two_origins: TwoOrigins, app_class: type[Starlette], cors_outside: bool
) -> None:
    # In either order, and in a plain Starlette app too (no error layer to make the request's record first).
    layers = [
        Middleware(CORSMiddleware, preset="strict", allow_origins=[two_origins.page_origin]),
        Middleware(TimingMiddleware),
    ]
    app = app_class(routes=[Route("/me", whoami)], middleware=layers if cors_outside else layers[::-1])
    api = serve_on_localhost(two_origins, app)

    read = two_origins.run_js(
        """
        const response = await fetch(api + "/me");
        await response.text();
        const entry = await resourceEntry(response.url);
        return { processTime: response.headers.get("X-Process-Time"), serverTiming: entry.serverTiming };
        """,
        api=api,
    )

    # Access-Control-Expose-Headers lets the page read X-Process-Time; Timing-Allow-Origin, added
    # for the allowed page, the metrics (without it Chromium gives an empty list).
    assert float(read["processTime"]) >= 0
    assert [metric["name"] for metric in read["serverTiming"]] == ["app"]


async def items(request: Request) -> Response:
    return PlainTextResponse(f"{request.method} items")


MOVED = """
async function attempt(init) {
  try {
    const response = await fetch(api + "/v1/items", init);
    return { status: response.status, body: await response.text(), at: new URL(response.url).pathname };
  } catch (error) {
    return { error: error.name };
  }
}
return {
  simple: await attempt(),
  preflighted: await attempt({ method: "PUT", headers: { "Content-Type": "application/json" }, body: "{}" }),
};
"""


@pytest.mark.parametrize("cors_outside", [True, False], ids=["CORS-outside-redirects", "redirects-outside-CORS"])
def test_a_page_follows_a_redirect_only_with_cors_outside_the_redirects(
    two_origins: TwoOrigins, cors_outside: bool
) -> None:
    cors = Middleware(CORSMiddleware, preset="first-party", allow_origins=[two_origins.page_origin])
    redirects = Middleware(RedirectMiddleware, rules=[Redirect("/v1/items", "/v2/items")])
    app = App(
        routes=[Route("/v2/items", items, methods=["GET", "PUT"])],
        middleware=[cors, redirects] if cors_outside else [redirects, cors],  # the first is outermost
    )
    api = serve_on_localhost(two_origins, app)

    result = two_origins.run_js(MOVED, api=api)

    if cors_outside:
        # The 301 (GET) and the 308 (PUT, body kept) carry the CORS headers, so the browser follows them;
        # CORS answers the PUT's preflights itself, for the old path and then for the new.
        assert result == {
            "simple": {"status": 200, "body": "GET items", "at": "/v2/items"},
            "preflighted": {"status": 200, "body": "PUT items", "at": "/v2/items"},
        }
    else:
        # Fetch runs the CORS check on a redirect before following it, and a preflight may not be redirected.
        assert result == {"simple": BLOCKED, "preflighted": BLOCKED}


async def origin(request: Request) -> Response:
    return PlainTextResponse(request.headers.get("origin", "none"))


def test_a_redirect_to_another_origin_arrives_with_origin_null(two_origins: TwoOrigins) -> None:
    # The API moved from localhost to 127.0.0.1 (same port): a third origin for the page.
    app = App(
        routes=[Route("/origin", origin)],
        middleware=[
            Middleware(CORSMiddleware, preset="public"),  # "*": the browser reads the answer whatever the Origin
            Middleware(RedirectMiddleware, rules=[Redirect.host("localhost", "127.0.0.1")]),
        ],
    )
    api = serve_on_localhost(two_origins, app)

    result = two_origins.run_js(
        "const response = await fetch(api + '/origin'); return [new URL(response.url).host, await response.text()];",
        api=api,
    )

    # Fetch's "tainted origin": no preset allows null, so a front end must call the new host itself.
    assert result == [api.removeprefix("http://").replace("localhost", "127.0.0.1"), "null"]


READ_ME = """
try {
  const response = await fetch(api + "/me");
  return { status: response.status, body: await response.text() };
} catch (error) {
  return { error: error.name };
}
"""


def test_a_subdomain_wildcard_lets_its_subdomains_read_and_no_other_site(two_origins: TwoOrigins) -> None:
    # Chromium resolves every name under .localhost to loopback, so one page server answers as
    # web.app.localhost (a subdomain of the site app.localhost) and as evil.localhost (another site).
    port = two_origins.page_origin.rpartition(":")[2]
    api = serve(two_origins, allow_origins=[f"http://*.app.localhost:{port}"])
    outcomes = {}
    for host in ("web.app.localhost", "deep.web.app.localhost", "app.localhost", "evil.localhost"):
        two_origins.page.goto(f"http://{host}:{port}/")
        outcomes[host] = two_origins.run_js(READ_ME, api=api)

    assert outcomes == {
        "web.app.localhost": {"status": 200, "body": "anonymous"},
        "deep.web.app.localhost": {"status": 200, "body": "anonymous"},
        "app.localhost": BLOCKED,  # the domain itself is not one of its subdomains
        "evil.localhost": BLOCKED,
    }
