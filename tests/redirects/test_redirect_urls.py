"""A redirect never answers a request with its own URL (issue 15); the request goes on to the app."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import unquote

import pytest
from ada_url import URL, join_url
from hypothesis import given
from hypothesis import strategies as st
from redirect_calls import call, make_app

from starlette_mw import Redirect, RedirectMiddleware

pytestmark = pytest.mark.anyio


async def test_the_reported_case_goes_on_to_the_app() -> None:
    app = make_app(Redirect("/go", "/{?to}"))
    answer = await call(app, "/go", query=b"to=go")
    assert (answer.status, answer.location, answer.body) == (200, None, b"GET /go?to=go")
    assert (await call(app, "/go", query=b"to=elsewhere")).location == "/elsewhere?to=elsewhere"


@pytest.mark.parametrize(
    ("rules", "options", "path", "query", "host", "scheme"),
    [
        # Escapes and dot segments that a browser resolves before it sends the request again.
        ([Redirect("/go", "/{?to}")], {}, "/go", b"to=%67o", b"example.com", "http"),
        ([Redirect("/go", "/{?to}")], {}, "/go", b"to=./go", b"example.com", "http"),
        ([Redirect("/go", "/{?to}")], {}, "/go", b"to=x/%2e%2e/go", b"example.com", "http"),
        ([Redirect("/go", "/{?to}")], {}, "/go", b"to=go&a='&b=%7e", b"example.com", "http"),
        ([Redirect("/a/b", "/a/{?to}")], {}, "/a/b", b"to=b", b"example.com", "http"),
        ([Redirect("/", "/{?to}")], {}, "/", b"to=", b"example.com", "http"),
        # An absolute target on the request's own origin, default port written or not.
        ([Redirect("/go", "https://example.com/{?to}")], {}, "/go", b"to=go", b"example.com:443", "https"),
        ([Redirect("/go", "http://example.com:80/{?to}")], {}, "/go", b"to=go", b"Example.com", "http"),
        # The trailing-slash policy sends '/a/' to rule 0, whose target is the request's URL.
        ([Redirect("/a", "/{?to}/")], {"trailing_slash": "strip"}, "/a/", b"to=a", b"example.com", "http"),
    ],
)
async def test_a_location_that_resolves_to_the_request_is_not_sent(
    rules: list[Redirect], options: dict[str, Any], path: str, query: bytes, host: bytes, scheme: str
) -> None:
    answer = await call(make_app(*rules, **options), path, query=query, host=host, scheme=scheme)
    assert (answer.status, answer.location) == (200, None)


@pytest.mark.parametrize(
    ("rule", "path", "query", "host", "scheme", "location"),
    [
        (Redirect("/go", "https://example.com/{?to}"), "/go", b"to=go", b"example.com", "http", None),
        (Redirect("/go", "http://example.com:8000/{?to}"), "/go", b"to=go", b"example.com", "http", None),
        (Redirect("/go", "http://www.example.com/{?to}"), "/go", b"to=go", b"example.com", "http", None),
        (Redirect("/go", "/{?to}"), "/go", b"to=go/", b"example.com", "http", None),
        (Redirect("/go", "/{?to}"), "/go", b"to=go%2F", b"example.com", "http", None),
        (Redirect("/go", "/go?{?to}", query="drop"), "/go", b"to=a%3Db", b"example.com", "http", "/go?a%3Db"),
    ],
)
async def test_a_location_elsewhere_is_sent(
    rule: Redirect, path: str, query: bytes, host: bytes, scheme: str, location: str | None
) -> None:
    answer = await call(make_app(rule), path, query=query, host=host, scheme=scheme)
    assert answer.status == 301
    if location is not None:
        assert answer.location == location


async def test_post_redirect_get_to_the_same_url_is_sent() -> None:
    # The client comes back with a GET, another request: not a loop.
    app = make_app(Redirect("/form", "/form", methods=["POST"], status=303))
    answer = await call(app, "/form", method="POST")
    assert (answer.status, answer.location) == (303, "/form")
    assert (await call(app, "/form")).status == 200


# Property tests: generated rule sets and requests through the real middleware, judged by a WHATWG
# URL parser (ada, the one Node.js uses) as the reference for where a browser goes.
SEGMENTS = ["a", "b", "go", "x", "1"]
# Query values as a client sends them: other rules' paths and parts of them, dot segments plain
# and escaped, escapes of plain letters, '/', '?', an escaped '&', '%', quotes, empty.
VALUE_PIECES = [*SEGMENTS, "/", ".", "..", "%2e", "%2E%2e", "%67o", "%61", "?", "%26", "%", "%25", "'", "+", ""]
HOPS = 12


def following_method(method: str, status: int) -> str:
    """Fetch, "HTTP-redirect fetch": a 303 turns any method but GET and HEAD into GET; a 301 or 302, a POST."""
    if status == 303 and method not in ("GET", "HEAD"):
        return "GET"
    return "GET" if status in (301, 302) and method == "POST" else method


@st.composite
def path_texts(draw: st.DrawFn) -> str:
    return "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=3)))


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Redirect]:
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        source = draw(path_texts())
        captures = draw(st.booleans())
        if captures:
            source = source.rstrip("/") + "/{p}"
        pieces = draw(st.lists(st.sampled_from([*SEGMENTS, "{?to}", *(["{p}"] if captures else [])]), max_size=3))
        target = "/" + "/".join(pieces) + draw(st.sampled_from(["", "/"]))
        target = draw(st.sampled_from([target.replace("//", "/"), "/{?to}"]))  # the reported target, often
        target += draw(st.sampled_from(["", "?to={?to}", "?to=a", "?to=go", "?n=1"]))
        status = draw(st.sampled_from([None, 302, 303, 307]))
        modes: list[Literal["keep", "drop", "merge"]] = ["keep", "drop", "merge"]
        query = draw(st.sampled_from(modes))
        rules.append(Redirect(source, target, status=status, query=query))
    return rules


@st.composite
def request_for(draw: st.DrawFn, rules: list[Redirect]) -> tuple[str, str, str]:
    """(method, path as sent, query string) aimed at the rules."""
    sources = [str(rule.source).replace("{p}", draw(st.sampled_from(SEGMENTS))) for rule in rules]
    path = draw(st.sampled_from(sources) | st.sampled_from(sources) | path_texts())
    # A source's own path, as '/{?to}' needs to name it, or pieces.
    value = draw(
        st.sampled_from([source.lstrip("/") for source in sources])
        | st.lists(st.sampled_from(VALUE_PIECES), max_size=4).map("".join)
    )
    query = draw(st.sampled_from([f"to={value}", f"to={value}&n=1", f"n=1&to={value}", ""]))
    return draw(st.sampled_from(["GET", "POST"])), path, query


def request_key(method: str, url: URL) -> tuple[str, str, str, str, str]:
    """What the server sees of a request to `url`: its path arrives decoded."""
    return method, url.protocol, url.host, unquote(url.pathname), url.search


@given(rules=rule_sets(), trailing_slash=st.sampled_from([None, "strip", "append"]), data=st.data())
async def test_no_redirect_names_the_request_and_accepted_rules_never_loop(
    rules: list[Redirect], trailing_slash: Any, data: st.DataObject
) -> None:
    try:
        app = RedirectMiddleware(make_app(), rules=rules, trailing_slash=trailing_slash)
    except ValueError as error:
        assert "loop" in str(error) or "keep redirecting" in str(error) or "already rule" in str(error), error
        return
    method, path, query = data.draw(request_for(rules), label="method, path, query")
    url = URL("http://example.com" + path + ("?" + query if query else ""))
    seen = {request_key(method, url)}
    for _ in range(HOPS):
        answer = await call(
            app, unquote(url.pathname), method=method, query=url.search[1:].encode(), raw_path=url.pathname.encode()
        )
        assert answer.status < 500
        if answer.location is None:
            return
        following = URL(join_url(url.href, answer.location))
        before = request_key(method, url)
        method = following_method(method, answer.status)
        key = request_key(method, following)
        assert key != before, f"{url.href} answered with its own URL: {answer.location}"
        assert key not in seen, f"{url.href} -> {answer.location}: back to an earlier request of {sorted(seen)}"
        seen.add(key)
        url = following


def test_curl_gets_the_app_for_the_reported_link(mw_live_server: Callable[..., str]) -> None:
    curl = "/usr/bin/curl"
    if not os.access(curl, os.X_OK):
        pytest.fail(f"This test needs curl at {curl}: apt-get update && apt-get install -y curl.", pytrace=False)
    base = mw_live_server(make_app(Redirect("/go", "/{?to}")))
    for link, body, hops in [("/go?to=go", "GET /go?to=go", 0), ("/go?to=%2e/go", "GET /go?to=%2e/go", 0)]:
        result = subprocess.run(
            [curl, "-sS", "-L", "--max-redirs", "5", "-w", "\n%{num_redirects}", base + link],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert result.stdout == f"{body}\n{hops}"
