"""The path index: a request tries only the rules its own segments lead to, in rule order."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from starlette_mw import Redirect, RedirectMiddleware
from starlette_mw._redirects.index import PathIndex, PathRule


def index(*rules: Redirect) -> PathIndex:
    return PathIndex([PathRule(number, rule, (301, 308)) for number, rule in enumerate(rules)])


def first(found: PathIndex, path: str) -> int | None:
    """The index of the rule a GET for `path` meets first, or None."""
    match = found.find(path, "GET", b"")
    return None if match is None else match[0].index


def test_rules_sharing_a_first_segment_are_not_scanned() -> None:
    # Review finding: 10,000 rules under '/blog/' made every '/blog/...' request try each of them.
    rules = [Redirect(f"/blog/{{slug}}/{number}", f"/posts/{{slug}}/{number}") for number in range(10_000)]
    found = index(*rules)
    assert [rule.index for rule in found.candidates("/blog/a/9876")] == [9876]
    assert found.candidates("/blog/a/b") == []
    assert first(found, "/blog/a/9876") == 9876
    RedirectMiddleware(Starlette(), rules=rules)  # the loop check follows each rule through the index too


def test_regex_rules_hang_under_their_literal_segments() -> None:
    found = index(
        Redirect(re.compile(r"/a/b/(\d+)"), "/x/{1}"),
        Redirect(re.compile(r"^/a/(\d+)$"), "/y/{1}"),
        Redirect(re.compile(r"/about"), "/z"),
        Redirect(re.compile(r"/(a|b)/c"), "/w"),
    )
    assert sorted(rule.index for rule in found.candidates("/a/b/1")) == [0, 1, 3]
    assert sorted(rule.index for rule in found.candidates("/about")) == [2, 3]
    assert sorted(rule.index for rule in found.candidates("/c/d")) == [3]


@pytest.mark.parametrize(
    ("rules", "path", "winner"),
    [
        ([Redirect("/a/{x}/c", "/1"), Redirect("/a/b/{y}", "/2"), Redirect("/a/b/c", "/3")], "/a/b/c", 0),
        ([Redirect("/a/b/{y}", "/2"), Redirect("/a/{x}/c", "/1")], "/a/b/c", 0),
        ([Redirect("/a/b/c", "/3"), Redirect("/a/{x}/c", "/1")], "/a/b/c", 0),
        ([Redirect("/docs/{rest:path}", "/1"), Redirect("/docs/a", "/2")], "/docs/a", 0),
        ([Redirect("/docs/a", "/2"), Redirect("/docs/{rest:path}", "/1")], "/docs/a", 0),
        ([Redirect("/{rest:path}", "/1"), Redirect("/a/{b}", "/2")], "/a/b", 0),
        ([Redirect("/f/{name}.txt", "/1"), Redirect("/f/{name}", "/2")], "/f/a.txt", 0),
        ([Redirect("/f/{id:int}", "/1"), Redirect("/f/{name}", "/2")], "/f/abc", 1),
        ([Redirect("/a/{x}/", "/1"), Redirect("/a/{x}", "/2")], "/a/b/", 0),
        ([Redirect(re.compile(r"/a/.*"), "/1"), Redirect("/a/{x}", "/2")], "/a/b", 0),
    ],
)
def test_first_match_wins_across_the_trie(rules: list[Redirect], path: str, winner: int) -> None:
    assert first(index(*rules), path) == winner


def test_empty_segments_do_not_meet_one_segment_parameters() -> None:
    found = index(Redirect("/a/{x}", "/1"), Redirect("/a/{x}/b", "/2"))
    assert first(found, "/a/") is None
    assert first(found, "/a//b") is None
    assert first(found, "/a/x/b") == 1


# -- Sources match what the route of the same path receives --------------------------------------------

SOURCES = ["/old", "/blog/{slug}", "/files/{rest:path}", "/items/{id:int}", "/a/{x}/b", "/v{n:int}/doc"]
PATH_PIECES = ["old", "blog", "files", "items", "a", "b", "v2", "doc", "x", "12", "", "\n", "%", "é", " ", "\t"]


@st.composite
def paths_near(draw: st.DrawFn, source: str) -> str:
    """A path the source's route may receive: its parameters filled with generated segments, or other
    segments, then a final newline or other text, or not."""
    if draw(st.booleans()):
        path = re.sub(r"\{[^}]*\}", lambda _: draw(st.sampled_from(PATH_PIECES) | st.text(max_size=3)), source)
    else:
        path = "/" + "/".join(draw(st.lists(st.sampled_from(PATH_PIECES) | st.text(max_size=2), max_size=4)))
    return path + draw(st.sampled_from(["", "", "\n", "/", "\n\n", "x", "\r"]))


@given(source=st.sampled_from(SOURCES), data=st.data(), method=st.sampled_from(["GET", "POST", "DELETE"]))
def test_a_source_matches_what_its_route_receives(source: str, data: st.DataObject, method: str) -> None:
    path = data.draw(paths_near(source), label="path")
    route = Route(source, PlainTextResponse, methods=[method])
    routed = route.matches({"type": "http", "path": path, "root_path": "", "method": method})[0] is Match.FULL
    # A retired path too: a 410 that '%0A' stepped around would leave the route reachable.
    rule = Redirect(source, status=410) if "{" not in source else Redirect(source, "/moved")
    middleware = RedirectMiddleware(PlainTextResponse("app"), rules=[rule])
    client = TestClient(middleware, base_url="https://example.com")
    # TestClient percent-encodes the path as a client does; the server decodes it back to `path`.
    response = client.request(method, quote(path, safe="/"), follow_redirects=False)
    event("routed" if routed else "not routed")
    assert (response.status_code != 200) == routed, (source, path, response.status_code)


BRACED = ["{a}", "{b:int}", "{c:path}", "{1}", "{?q}", "{", "}", "{}", "{a-b}", "{x:nope}", "x", "/"]


@given(pieces=st.lists(st.sampled_from(BRACED) | st.text(alphabet="{}/ax1?:", max_size=3), min_size=1, max_size=4))
def test_a_source_with_braces_is_refused_with_a_sentence_or_matches_as_its_route(pieces: list[str]) -> None:
    source = "/" + "".join(pieces)
    try:
        middleware = RedirectMiddleware(PlainTextResponse("app"), rules=[Redirect(source, "/moved")])
    except ValueError as error:  # a sentence that names the rule, never an IndexError or KeyError
        assert str(error).startswith("Redirect rule 0: "), error
        return
    route = Route(source, PlainTextResponse)
    # Braces that are no parameter ('{1}', '{?q}') are literal text to the route: that path.
    literal = re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}", "7", source)
    routed = route.matches({"type": "http", "path": literal, "root_path": "", "method": "GET"})[0] is Match.FULL
    assert (status_of(middleware, literal) == 301) == routed, (source, literal)


def status_of(app: ASGIApp, path: str) -> int:
    """The status of a GET for `path` (as the server decoded it), sent to the app in process."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": [],
             "scheme": "https", "http_version": "1.1"}  # fmt: skip
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> None:
        await app(scope, receive, send)

    asyncio.run(run())
    return statuses[0]
