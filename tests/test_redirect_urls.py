"""A redirect never answers a request with its own URL (issue 15); the request goes on to the app."""

from __future__ import annotations

from typing import Any

import pytest
from test_redirects import call, make_app

from starlette_mw import Redirect

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
