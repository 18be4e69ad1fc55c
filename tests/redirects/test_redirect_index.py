"""The path index: a request tries only the rules its own segments lead to, in rule order."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette

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
