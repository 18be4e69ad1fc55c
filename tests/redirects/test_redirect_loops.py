"""Rule sets that would redirect a client in a loop are refused when the middleware is built."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.testclient import TestClient

from starlette_mw import Redirect, RedirectMiddleware


def build(*rules: Redirect, **options: Any) -> RedirectMiddleware:
    return RedirectMiddleware(Starlette(), rules=list(rules), **options)


@pytest.mark.parametrize(
    ("rules", "options", "message"),
    [
        ([Redirect("/a", "/a")], {}, "Redirect rule 0: the rules redirect in a loop: /a -> (rule 0) /a;"),
        (
            [Redirect("/x", "/y"), Redirect("/a", "/b"), Redirect("/b", "/a")],
            {},
            "Redirect rule 1: the rules redirect in a loop: /a -> (rule 1) /b -> (rule 2) /a;",
        ),
        ([Redirect("/a", "/b"), Redirect("/b", "/c"), Redirect("/c", "/a")], {}, "/a -> (rule 0) /b -> (rule 1) /c"),
        ([Redirect("/blog/{slug}", "/blog/{slug}")], {}, "redirect in a loop: /blog/1 -> (rule 0) /blog/1"),
        ([Redirect("/docs/{rest:path}", "/docs/v2/{rest}")], {}, "keep redirecting (more than 10 hops)"),
        ([Redirect(re.compile(r"/u/.*"), "/u/me")], {}, "redirect in a loop: /u/me -> (rule 0) /u/me"),
        ([Redirect(re.compile(r"/a/(\d+)"), "/a/{1}")], {}, "/a/1 -> (rule 0) /a/1"),
        ([Redirect("/search", "/search?q={?q}")], {}, "/search -> (rule 0) /search"),
        # '/b%0A' is '/b' to the route, so to the rule too; the message shows it as sent.
        ([Redirect("/a", "/b%0A"), Redirect("/b", "/a")], {}, "loop: /a -> (rule 0) /b%0A -> (rule 1) /a;"),
        ([Redirect("/a/", "/a")], {"trailing_slash": "append"}, "/a -> (trailing_slash='append', then rule 0) /a;"),
        (
            [Redirect("/a", "/a/")],
            {"trailing_slash": "strip", "trailing_slash_if_route": True},
            "/a -> (rule 0) /a/ -> (trailing_slash='strip', then rule 0) /a/;",
        ),
        (
            [Redirect.host("a.example", "b.example"), Redirect.host("b.example", "a.example")],
            {},
            "http://a.example/ -> (rule 0) http://b.example/ -> (rule 1) http://a.example/",
        ),
        (
            [Redirect.scheme("https"), Redirect("/a", "http://example.com/a")],
            {"hosts": ["example.com"]},
            "http://example.com/a -> (rule 0) https://example.com/a -> (rule 1) http://example.com/a;",
        ),
        (
            [Redirect.scheme("http"), Redirect.scheme("https")],
            {"hosts": ["example.com"]},
            "http://example.com/ -> (rule 1) https://example.com/ -> (rule 0) http://example.com/",
        ),
        ([Redirect("/{page:path}", "/p/{page}", if_not_found=True)], {}, "keep redirecting"),
        (
            [Redirect("/a", "/b", methods=["POST"], status=307), Redirect("/b", "/a", methods=["POST"], status=307)],
            {},
            "POST /a -> (rule 0) POST /b -> (rule 1) POST /a;",
        ),
        ([Redirect("/search", "/search?q={?q}", query="drop")], {}, "/search -> (rule 0) /search;"),
        # Review finding 5: the exact rules take the plain samples ('/p/x', '/q/1'), not the unlikely ones.
        (
            [
                Redirect("/p/x", "/e"),
                Redirect("/q/1", "/e"),
                Redirect("/p/{x}", "/q/{x}"),
                Redirect("/q/{x}", "/p/{x}"),
            ],
            {},
            "/p/917 -> (rule 2) /q/917 -> (rule 3) /p/917;",
        ),
        (
            [
                Redirect("/p/1", "/e"),
                Redirect("/q/1", "/e"),
                Redirect(re.compile(r"/p/(\w+)"), "/q/{1}"),
                Redirect(re.compile(r"/q/(\w+)"), "/p/{1}"),
            ],
            {},
            "/p/917 -> (rule 2) /q/917 -> (rule 3) /p/917;",
        ),
        # Issue 15: a query parameter's value makes the loop; the error shows the query that does.
        (
            [Redirect("/go", "/{?to}"), Redirect("/back", "/go")],
            {},
            "redirect in a loop: /go?to=back -> (rule 0) /back?to=back -> (rule 1) /go?to=back;",
        ),
        (
            [Redirect("/a", "/go?to=a"), Redirect("/go", "/{?to}", query="drop")],
            {},
            "redirect in a loop: /a -> (rule 0) /go?to=a -> (rule 1) /a;",
        ),
        (
            # The client resolves '/a/../b' to '/b'.
            [Redirect("/go", "/a/{?to}", query="drop"), Redirect("/b", "/go?to=../b", query="drop")],
            {},
            "redirect in a loop: /b -> (rule 1) /go -> (rule 0) /b -> (rule 1) /go;",
        ),
        (
            [Redirect("/go", "/{?to}"), Redirect("/a/b", "/go")],
            {},
            "/go?to=a/b -> (rule 0) /a/b?to=a/b -> (rule 1) /go?to=a/b;",
        ),
    ],
)
def test_loops_are_refused(rules: list[Redirect], options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        build(*rules, **options)
    assert message in str(raised.value)
    assert str(raised.value).endswith("; change a target, or remove a rule.")


@pytest.mark.parametrize(
    ("rules", "options"),
    [
        ([Redirect("/a", "/b"), Redirect("/b", "/c")], {}),  # a chain, not a loop
        ([Redirect("/a/", "/a")], {"trailing_slash": "strip"}),
        ([Redirect("/blog/{slug}", "/posts/{slug}"), Redirect("/posts", "/blog")], {}),
        ([Redirect(re.compile(r"/u/(\d+)"), "/users/{1}")], {}),
        ([Redirect.scheme("https"), Redirect.host("www.example.com", "example.com")], {"hosts": ["example.com"]}),
        ([Redirect.scheme("https"), Redirect("/a", "https://example.com/b")], {"hosts": ["example.com"]}),
        ([Redirect("/a", "http://other.example/a")], {}),  # another site's redirects are its own business
        ([Redirect("/{page}", "/p/{page}", if_not_found=True)], {}),  # '/p/x' has two segments
        # Review finding 4: the target drops the parameter the rule needs, so it cannot match again.
        ([Redirect("/search", "/search?q={?term}", query="drop")], {}),
        # ... and the two rules never answer the same method.
        ([Redirect("/login", "/login/", methods=["GET"]), Redirect("/login/", "/login", methods=["POST"])], {}),
        # A 301 turns the POST into a GET, which neither rule answers.
        ([Redirect("/a", "/b", methods=["POST"], status=301), Redirect("/b", "/a", methods=["POST"], status=301)], {}),
        # Issue 15: to=go sends /go to itself, which is not sent at request time (the app answers).
        ([Redirect("/go", "/{?to}")], {}),
        ([Redirect("/go", "/{?to}"), Redirect("/old", "/new")], {}),
        ([Redirect("/p-{x}", "/{?to}")], {}),
    ],
)
def test_rule_sets_without_loops_are_accepted(rules: list[Redirect], options: dict[str, Any]) -> None:
    build(*rules, **options)


# -- A query value that a target puts into a path, which another rule's parameter hands back ----------

SEGMENTS = st.sampled_from(["go", "x", "a-b", "v2", "j%C3%A9"]) | st.from_regex(r"[a-z]{1,4}", fullmatch=True)


@given(
    first=SEGMENTS,
    middle=SEGMENTS,
    into=st.sampled_from(["/{middle}/{{?to}}", "/{middle}/{{?to}}/z", "/{middle}/{{?to=home}}"]),
    back=st.sampled_from(["/{{v}}?to={{v}}", "/{{v}}?k=1&to={{v}}"]),
    tail=st.sampled_from(["", "/z"]),
)
def test_a_loop_through_a_query_value_and_a_path_parameter_is_refused(
    first: str, middle: str, into: str, back: str, tail: str
) -> None:
    # '/go' puts ?to= into '/x/<to>'; '/x/{v}' sends v back as the path and as ?to=: with to=go, the
    # client goes round /go?to=go -> /x/go -> /go?to=go.
    rules = [
        Redirect(f"/{first}", into.format(middle=middle), query="drop"),
        Redirect(f"/{middle}/{{v}}{tail}", back.format(), query="drop"),
    ]
    try:
        middleware = build(*rules)
    except ValueError as error:
        assert "Redirect rule" in str(error), error
        event("refused")
        return
    event("accepted")
    client = TestClient(middleware, base_url="https://example.com")
    for start in (f"/{first}?to={first}", f"/{first}?to={first}/z", f"/{middle}/{first}"):
        url, visited = start, set()
        while url not in visited:
            visited.add(url)
            response = client.get(url, follow_redirects=False)
            if "location" not in response.headers:
                break
            url = response.headers["location"]
        else:
            pytest.fail(f"{rules} were accepted, yet {start} leads back to {url}")
