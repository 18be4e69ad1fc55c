"""`PathFilter`: which requests a middleware's `include=` / `exclude=` patterns let through."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.types import Scope

from starlette_mw import PathFilter
from starlette_mw._paths import route_path


def http_scope(path: str, root_path: str = "") -> Scope:
    return {"type": "http", "path": path, "root_path": root_path}


def matching(paths: PathFilter, candidates: list[str]) -> list[str]:
    return [path for path in candidates if paths.matches(path)]


def test_no_patterns_match_everything() -> None:
    paths = PathFilter()
    assert paths.everything
    assert paths(http_scope("/anything/at/all"))
    assert matching(paths, ["/", "/x", ""]) == ["/", "/x", ""]


def test_exact_path() -> None:
    paths = PathFilter(include="/health")
    assert not paths.everything
    assert matching(paths, ["/health", "/health/", "/healthz", "/health/x", "/HEALTH", "/"]) == ["/health"]


def test_exact_path_with_regex_characters_is_literal() -> None:
    paths = PathFilter(include="/v1.0/(x)+")
    assert matching(paths, ["/v1.0/(x)+", "/v1x0/(x)+", "/v1.0/xx"]) == ["/v1.0/(x)+"]


def test_subtree_matches_its_root_and_everything_below_but_not_a_longer_name() -> None:
    paths = PathFilter(include="/api/*")
    candidates = ["/api", "/api/", "/api/x", "/api/x/y", "/apix", "/apix/y", "/v1/api/x", "/"]
    assert matching(paths, candidates) == ["/api", "/api/", "/api/x", "/api/x/y"]


def test_root_subtree_matches_every_path() -> None:
    assert matching(PathFilter(include="/*"), ["/", "/x", "/x/y"]) == ["/", "/x", "/x/y"]


def test_subtree_covers_paths_with_a_newline() -> None:
    # Paths are percent-decoded, so '/api/%0A' arrives as '/api/\n'; '/api/*' must still cover it.
    assert PathFilter(exclude="/api/*").matches("/api/a\nb") is False


def test_a_final_newline_matches_as_the_router_routes_it() -> None:
    # 'GET /admin%0A' arrives as '/admin\n', and Starlette's '^/admin$' (re.match) routes it to
    # Route('/admin'): each kind of pattern that names that route matches it too.
    patterns: list[str | re.Pattern[str]] = ["/admin", "/{page}", "/admin/*", re.compile("/admin"), re.compile("/a.*")]
    for pattern in patterns:
        assert PathFilter(include=pattern).matches("/admin\n"), pattern
    assert PathFilter(include="/api/*").matches("/api\n")
    # One newline only, and only at the end: '$' lets nothing else through.
    assert matching(PathFilter(include="/admin"), ["/admin\n\n", "/admin\r", "/admin\n/", "/admi\nn"]) == []
    assert not PathFilter(include="/api/*").matches("/api\n/x")


def test_a_path_parameter_stops_at_a_newline_inside_the_path_as_the_route_does() -> None:
    # Starlette's '{rest:path}' is '.*' without DOTALL: Route('/files/{rest:path}') does not receive
    # '/files/a\nb', so the pattern does not match it; '{name}' ('[^/]+') takes the newline.
    assert matching(PathFilter(include="/files/{rest:path}"), ["/files/a\nb", "/files/a\n"]) == ["/files/a\n"]
    assert PathFilter(include="/files/{name}").matches("/files/a\nb")
    # A subtree takes all of it: a route such as '/api/{name}' would.
    assert PathFilter(include="/api/*").matches("/api/a\nb/c")


def test_no_patterns_never_look_at_the_path() -> None:
    # The per-request cost without include= / exclude=: no matcher runs, the scope is not read.
    assert PathFilter()({"type": "http"})


def test_starlette_path_syntax() -> None:
    paths = PathFilter(include="/users/{id:int}")
    assert matching(paths, ["/users/12", "/users/abc", "/users/12/posts", "/users/", "/users/-1"]) == ["/users/12"]
    named = PathFilter(include="/hello/{name}")
    assert matching(named, ["/hello/bob", "/hello/bob/x", "/hello/"]) == ["/hello/bob"]
    rest = PathFilter(include="/files/{rest:path}")
    assert matching(rest, ["/files/a/b/c.txt", "/files/", "/filesx"]) == ["/files/a/b/c.txt", "/files/"]


def test_starlette_path_syntax_as_a_subtree() -> None:
    paths = PathFilter(include="/users/{id:int}/*")
    assert matching(paths, ["/users/1", "/users/1/posts", "/users/x/posts", "/users/12x"]) == [
        "/users/1",
        "/users/1/posts",
    ]


def test_several_patterns_may_name_the_same_parameter() -> None:
    paths = PathFilter(include=["/users/{id:int}", "/posts/{id:int}"])
    assert matching(paths, ["/users/1", "/posts/2", "/tags/3"]) == ["/users/1", "/posts/2"]


def test_compiled_regex_must_match_the_whole_path() -> None:
    paths = PathFilter(include=re.compile(r"/v\d+/.*"))
    assert matching(paths, ["/v1/users", "/v22/", "/x/v1/users", "/v1", "/vx/users"]) == ["/v1/users", "/v22/"]


def test_compiled_regex_keeps_its_flags() -> None:
    paths = PathFilter(include=["/Public", re.compile("/admin/.*", re.IGNORECASE)])
    # IGNORECASE applies to the regex alone, not to the string pattern beside it.
    assert matching(paths, ["/ADMIN/Users", "/admin/x", "/Public", "/public", "/PUBLIC"]) == [
        "/ADMIN/Users",
        "/admin/x",
        "/Public",
    ]
    # Without DOTALL, as with re.fullmatch, '.' does not match a newline.
    assert PathFilter(include=re.compile("/a.b")).matches("/a\nb") is False
    assert PathFilter(include=re.compile("/a.b", re.DOTALL)).matches("/a\nb") is True


def test_compiled_regex_with_inline_flags_verbose_and_shared_group_names() -> None:
    inline = PathFilter(include=re.compile("(?i)/health"))
    assert matching(inline, ["/HEALTH", "/Health", "/healthz"]) == ["/HEALTH", "/Health"]
    verbose = PathFilter(include=re.compile(r" /v \d+  # a version prefix ", re.VERBOSE))
    assert matching(verbose, ["/v1", "/v 1", "/v"]) == ["/v1"]
    groups = PathFilter(include=[re.compile(r"/a/(?P<id>\d+)"), re.compile(r"/b/(?P<id>\d+)/(?P=id)")])
    assert matching(groups, ["/a/1", "/b/2/2", "/b/2/3"]) == ["/a/1", "/b/2/2"]


def test_exclude_wins_over_include() -> None:
    paths = PathFilter(include="/api/*", exclude=["/api/health", re.compile(r"/api/internal/.*")])
    candidates = ["/api/users", "/api/health", "/api/internal/x", "/api/internal", "/other"]
    assert matching(paths, candidates) == ["/api/users", "/api/internal"]


def test_exclude_alone_keeps_every_other_path() -> None:
    paths = PathFilter(exclude="/health")
    assert matching(paths, ["/", "/health", "/healthz"]) == ["/", "/healthz"]


def test_root_path_is_stripped_before_matching() -> None:
    paths = PathFilter(include="/api/*")
    assert paths(http_scope("/prefix/api/users", root_path="/prefix"))
    assert not paths(http_scope("/prefix/other", root_path="/prefix"))
    # '/prefixed' does not start with the mount point '/prefix', so nothing is stripped.
    assert not paths(http_scope("/prefixed/api/users", root_path="/prefix"))
    # The mount point itself is '' to the routes: no route '/' receives it (the router redirects
    # it to '/prefix/'), so '/' does not match it either.
    assert not PathFilter(include="/")(http_scope("/prefix", root_path="/prefix"))
    assert PathFilter(include="/")(http_scope("/prefix/", root_path="/prefix"))


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/api/x", "", "/api/x"),
        ("/prefix/api/x", "/prefix", "/api/x"),
        ("/prefix", "/prefix", ""),
        ("/prefix/", "/prefix", "/"),
        ("/prefixed/x", "/prefix", "/prefixed/x"),
        ("/api/x", "/prefix", "/api/x"),  # a server that leaves root_path out of path
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    assert route_path(http_scope(path, root_path)) == expected


def test_route_path_without_root_path_key() -> None:
    assert route_path({"type": "http", "path": "/x"}) == "/x"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"include": []}, ValueError, r"include=\[\] matches no path; pass None \(the default\) to leave it out\."),
        ({"exclude": ()}, ValueError, r"exclude=\[\] matches no path"),
        ({"include": "/api/*/users"}, ValueError, r"'/api/\*/users' has a '\*' that is not a final '/\*'"),
        ({"include": "/api*"}, ValueError, r"'/api\*' has a '\*' that is not a final '/\*'"),
        ({"exclude": "*"}, ValueError, r"exclude pattern '\*' must start with '/'"),
        ({"include": "health"}, ValueError, r"include pattern 'health' must start with '/', as in '/health'\."),
        ({"include": "/users/{id:nope}"}, ValueError, r"'/users/\{id:nope\}' is not a valid Starlette path"),
        ({"include": "/a/{id}/{id}"}, ValueError, r"'/a/\{id\}/\{id\}' is not a valid Starlette path"),
        ({"include": ["/ok", 3]}, TypeError, r"include pattern 3 has type int; use a path string such as '/health'"),
        ({"exclude": [None]}, TypeError, r"exclude pattern None has type NoneType"),
        ({"include": 3}, TypeError, r"include=3 has type int; use a path string"),
        ({"include": re.compile(b"/x")}, TypeError, r"is a bytes regular expression.*re\.compile\('/x'\)"),
    ],
)
def test_bad_patterns(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        PathFilter(**kwargs)


def test_a_generator_of_patterns_is_refused() -> None:
    # Starlette builds the middleware stack more than once (describe() does too); a generator
    # would reach the second build empty, so it is refused up front.
    with pytest.raises(TypeError, match=r"include=<generator .*> has type generator; .* a list or tuple of them"):
        PathFilter(include=(pattern for pattern in ["/a", "/b/*"]))  # type: ignore[arg-type]
    assert matching(PathFilter(include=("/a", "/b/*")), ["/a", "/b/c", "/c"]) == ["/a", "/b/c"]
