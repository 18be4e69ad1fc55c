"""Rules are checked when the middleware is built, with the rule's index in the error; loading from files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from starlette_mw import Redirect, RedirectMiddleware, load_redirects


def build(*rules: Any, **options: Any) -> RedirectMiddleware:
    return RedirectMiddleware(Starlette(), rules=list(rules), **options)


@pytest.mark.parametrize(
    ("rules", "options", "error", "message"),
    [
        ([Redirect("/a", "/b", status=200)], {}, ValueError, "Redirect rule 0: status 200 is not a redirect status"),
        ([Redirect("/a", "/b", status=True)], {}, ValueError, "status True is not a redirect status"),
        ([Redirect("/a", "/b", status=410)], {}, ValueError, "status 410 (Gone) sends no Location"),
        ([Redirect("/a")], {}, ValueError, "Redirect rule 0: source '/a' has no target; give one, or status=410"),
        ([Redirect(re.compile("/a"), status=302)], {}, ValueError, "rule 0: source '/a' has no target; give one"),
        ([], {"status": 410}, ValueError, "RedirectMiddleware: status 410 is not a redirect status"),
        (
            [Redirect("/x", "/y"), Redirect("/blog/{id}", "/posts/{slug}")],
            {},
            ValueError,
            "Redirect rule 1: target '/posts/{slug}' names group 'slug', which pattern '/blog/{id}' does not define.",
        ),
        ([Redirect(re.compile(r"/u/(\d+)"), "/users/{2}")], {}, ValueError, "names group '2'"),
        ([Redirect("/a/{id:nope}", "/b")], {}, ValueError, "is not a valid Starlette path"),
        ([Redirect("a", "/b")], {}, ValueError, "source 'a' must start with '/'"),
        ([Redirect(42, "/b")], {}, TypeError, "source 42 has type int"),  # type: ignore[arg-type]
        ([Redirect(re.compile(rb"/a"), "/b")], {}, TypeError, "bytes regular expression"),  # type: ignore[arg-type]
        ([Redirect("/a", "//evil.example/")], {}, ValueError, "starts with '//'"),
        ([Redirect("/a", "/\\evil.example/")], {}, ValueError, "a backslash"),
        ([Redirect("/a", "evil.example/x")], {}, ValueError, "neither a path starting with '/' nor an absolute"),
        ([Redirect("/a", "javascript:alert(1)")], {}, ValueError, "neither a path"),
        ([Redirect("/a", "https://user@evil.example/")], {}, ValueError, "neither a path"),
        ([Redirect("/{x}", "https://example.com{x}")], {}, ValueError, "neither a path"),
        ([Redirect("/a", "/b c")], {}, ValueError, "a space"),
        ([Redirect("/a", "/b\r\nX: y")], {}, ValueError, "printable ASCII"),
        ([Redirect("/a", "/b#top")], {}, ValueError, "has a '#'"),
        ([Redirect("/a", "/b/{x y}")], {}, ValueError, "has the placeholder {x y}"),
        ([Redirect("/a", "/b/{")], {}, ValueError, "stray brace"),
        ([Redirect("/a", "/b", query="append")], {}, ValueError, "query='append' is not one of"),  # type: ignore[arg-type]
        ([Redirect("/a", "/b", methods="GET")], {}, TypeError, "methods='GET' must be a list"),
        ([Redirect("/a", "/b", methods=[])], {}, ValueError, "methods=[] matches no request"),
        ([Redirect("/x", "/y"), Redirect("/a", "/b", methods=[1])], {}, TypeError, "rule 1: methods holds 1, which"),  # type: ignore[list-item]
        ([Redirect("/a", "/b", methods=5)], {}, TypeError, "Redirect rule 0: methods=5 must be a list"),  # type: ignore[arg-type]
        ([Redirect("/a", "/b", methods=[["GET"]])], {}, TypeError, "methods holds ['GET'], which"),  # type: ignore[list-item]
        ([Redirect("/a", "/b", methods=["GET POST"])], {}, TypeError, "methods holds 'GET POST', which"),
        (
            [Redirect("/a", "/b"), Redirect("/x", "/y"), Redirect("/a", "/c", methods=["POST"])],
            {},
            ValueError,
            "Redirect rule 2: source '/a' is already rule 0's, which matches every request this one would;",
        ),
        ([Redirect("/a", "/b", if_not_found=1)], {}, TypeError, "if_not_found=1 must be True or False"),  # type: ignore[arg-type]
        ([Redirect("/a", "/b", kind="port")], {}, ValueError, "kind='port' is not"),  # type: ignore[arg-type]
        ([Redirect("/a", "/b", port=1)], {}, ValueError, "port=1 is for scheme rules only"),
        ([Redirect.scheme("https", port=70000)], {"hosts": ["a.example"]}, ValueError, "port=70000 is not a TCP port"),
        ([Redirect.scheme("https")], {}, ValueError, "Redirect rule 0: a scheme rule builds an absolute Location"),
        ([Redirect.scheme("ftp")], {"hosts": ["a.example"]}, ValueError, "must go from http to https or back"),
        ([Redirect.host("www.example.com", "exa mple.com")], {}, ValueError, "'exa mple.com' is not a host name"),
        ([Redirect.host("www.example.com:80", "example.com")], {}, ValueError, "has a port"),
        ([Redirect.host("example.com", "example.com:8000")], {}, ValueError, "redirects a host to itself"),
        (
            [Redirect("/x", "/y"), Redirect("a.example", "b.example", kind="host", methods=["GET"])],
            {},
            ValueError,
            "Redirect rule 1: methods=frozenset({'GET'}) does not apply to a host rule",
        ),
        ([Redirect("a.example", "b.example", kind="host", query="drop")], {}, ValueError, "query='drop' does not"),
        (
            [Redirect("http", "https", kind="scheme", if_not_found=True)],
            {"hosts": ["a.example"]},
            ValueError,
            "if_not_found=True does not apply to a scheme rule",
        ),
        (["/a"], {}, TypeError, "Redirect rule 0: '/a' has type str; use starlette_mw.Redirect"),
        ([], {"trailing_slash": "add"}, ValueError, "trailing_slash='add' must be 'strip', 'append' or None"),
        ([], {"trailing_slash_if_route": True}, ValueError, "needs trailing_slash="),
        ([], {"hosts": "example.com"}, TypeError, "hosts='example.com' is not a list"),
        ([], {"hosts": ["bad host"]}, ValueError, "'bad host' is not a host name"),
        (
            [],
            {"hosts": ["Bücher.example"]},
            ValueError,
            "in its IDNA (punycode) form, so write 'xn--bcher-kva.example'.",
        ),
        (
            [Redirect.host("straße.example", "a.example")],
            {},
            ValueError,
            "letters beyond ASCII in its IDNA (punycode) form.",
        ),
        # Review finding 1: hosts are names, compared with the request's name; and ports must be ports.
        (
            [Redirect.scheme()],
            {"hosts": ["localhost:8000"]},
            ValueError,
            "hosts= holds 'localhost:8000'; list host names without a port, as in hosts=['localhost']",
        ),
        ([], {"hosts": ["example.com:0"]}, ValueError, "hosts=: 'example.com:0' has port '0'; use a port from 1"),
        ([Redirect.host("a.com", "b.com:99999")], {}, ValueError, "rule 0: 'b.com:99999' has port '99999'; use"),
        ([Redirect.host("a.com", "b.com:080")], {}, ValueError, "rule 0: 'b.com:080' has port '080'; use a port"),
        ([Redirect("/a", "https://b.com:0/")], {}, ValueError, "rule 0: target 'https://b.com:0/' has port '0'"),
        ([Redirect("/a", "http://b.com:080/{x}")], {}, ValueError, "has port '080'; use a port from 1 to 65535, no"),
        ([Redirect("/a", "http://b.com:65536/")], {}, ValueError, "rule 0: target 'http://b.com:65536/' has port"),
        # Review finding 4: clients resolve dot segments, so '/a/x/../b' is '/a/b', a loop the check missed.
        (
            [Redirect("/x", "/y"), Redirect("/a/b", "/a/x/../b")],
            {},
            ValueError,
            "Redirect rule 1: target '/a/x/../b' has a '.' or '..' segment, which clients resolve before they "
            "follow it; write the resolved target, '/a/b'.",
        ),
        ([Redirect("/a/b", "/a/%2e%2E/a/b")], {}, ValueError, "write the resolved target, '/a/b'."),
        ([Redirect("/a/b", "/a/./c?q=../d")], {}, ValueError, "write the resolved target, '/a/c?q=../d'."),
        ([Redirect("/a/{x}", "https://b.com/{x}/..")], {}, ValueError, "write the resolved target, 'https://b.com/'."),
    ],
)
def test_construction_errors(rules: list[Any], options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        build(*rules, **options)
    assert message in str(raised.value)


def test_dots_that_are_not_dot_segments_are_accepted() -> None:
    build(Redirect("/a", "/b/.../c/.d/e..?x=/../"), Redirect("/c", "/d?q={?r}"))


def test_token_methods_and_exact_sources_split_by_method_are_accepted() -> None:
    build(Redirect("/a", "/b", methods=["M-SEARCH"]), Redirect("/a", "/c", methods=["GET"]), Redirect("/a", "/d"))


def test_rules_must_be_a_list() -> None:
    with pytest.raises(TypeError, match=r"rules='/a' is not a list of Redirect rules"):
        RedirectMiddleware(Starlette(), rules="/a")  # type: ignore[arg-type]


RULES = [
    {"source": "/old", "target": "/new"},
    {"source": "/blog/{slug}", "target": "/posts/{slug}", "status": 302},
    {"regex": r"/u/(?P<id>\d+)", "target": "/users/{id}", "methods": "GET"},
    {"source": "/gone", "status": 410},
    {"kind": "host", "source": "www.example.com", "target": "example.com"},
]
EXPECTED = [
    Redirect("/old", "/new"),
    Redirect("/blog/{slug}", "/posts/{slug}", status=302),
    Redirect(re.compile(r"/u/(?P<id>\d+)"), "/users/{id}", methods=["GET"]),
    Redirect("/gone", status=410),
    Redirect.host("www.example.com", "example.com"),
]

TOML = """
[[redirects]]
source = "/old"
target = "/new"

[[redirects]]
source = "/blog/{slug}"
target = "/posts/{slug}"
status = 302

[[redirects]]
regex = '/u/(?P<id>\\d+)'
target = "/users/{id}"
methods = "GET"

[[redirects]]
source = "/gone"
status = 410

[[redirects]]
kind = "host"
source = "www.example.com"
target = "example.com"
"""


def test_load_from_a_list_a_toml_file_and_a_json_file(tmp_path: Path) -> None:
    toml_file = tmp_path / "redirects.toml"
    toml_file.write_text(TOML)
    json_list = tmp_path / "list.json"
    json_list.write_text(json.dumps(RULES))
    json_object = tmp_path / "object.json"
    json_object.write_text(json.dumps({"redirects": RULES}))
    for source in (RULES, toml_file, str(json_list), json_object):
        assert load_redirects(source) == EXPECTED  # type: ignore[arg-type]
    build(*load_redirects(toml_file))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[redirects]]\nsource = "/a"\ntarget = "/b"\nstatuz = 302\n',
            "rule 0: key 'statuz' is not a Redirect option",
        ),
        ('[[redirects]]\ntarget = "/b"\n', "rule 0: give exactly one of the keys 'source'"),
        ('[[redirects]]\nregex = "/a("\ntarget = "/b"\n', "rule 0: key 'regex' holds '/a(', which is not a regular"),
        ('[[redirects]]\nsource = "/a"\ntarget = "/b"\n[[redirects]]\nsource = "/c"\nstatus = 999\n', "status 999"),
        ('[[redirects]]\nsource = "/a"\ntarget = "/b"\n[[redirects]]\nsource = "/c"\nstatus = 999\n', "rule 1"),
        ("[redirect]\n", "expected a list of rules under the key 'redirects'"),
        ("redirects = [1]\n", "rule 0: 1 is a int, not a table"),
        ("[[redirects]\n", "not valid TOML"),
    ],
)
def test_load_errors_name_the_file_the_rule_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises((ValueError, TypeError)) as raised:
        load_redirects(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_load_errors_for_a_file_that_is_not_utf8_or_that_loops(tmp_path: Path) -> None:
    # Review finding 6: a bare UnicodeDecodeError named no file; a loop showed only at the middleware.
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[[redirects]]\nsource = "/caf\xe9"\ntarget = "/b"\n')
    with pytest.raises(
        ValueError, match=r"latin1\.toml: not UTF-8 text \(byte 0xe9 at offset 28\); save the file as UTF-8"
    ):
        load_redirects(latin1)
    looping = tmp_path / "loop.json"
    looping.write_text(json.dumps([{"source": "/a", "target": "/b"}, {"source": "/b", "target": "/a"}]))
    with pytest.raises(ValueError) as raised:
        load_redirects(looping)
    assert str(raised.value).startswith(f"{looping}: Redirect rule 0: the rules redirect in a loop: /a -> (rule 0) /b")
    with pytest.raises(ValueError, match=r"^load_redirects\(\): Redirect rule 0: the rules redirect in a loop"):
        load_redirects([{"source": "/a", "target": "/a"}])


def test_loading_accepts_what_loops_only_under_some_default_status() -> None:
    # With status=301 the POSTs turn into GETs, which neither rule answers: the middleware decides.
    rules = load_redirects(
        [{"source": "/a", "target": "/b", "methods": ["POST"]}, {"source": "/b", "target": "/a", "methods": ["POST"]}]
    )
    build(*rules, status=301)
    with pytest.raises(ValueError, match="POST /a -> \\(rule 0\\) POST /b"):
        build(*rules)


def test_load_errors_for_other_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ends in neither \.toml nor \.json"):
        (tmp_path / "rules.yaml").write_text("[]")
        load_redirects(tmp_path / "rules.yaml")
    with pytest.raises(ValueError, match=r"not valid JSON"):
        (tmp_path / "rules.json").write_text("[")
        load_redirects(tmp_path / "rules.json")
    with pytest.raises(TypeError, match=r"pass a file path or a list of dicts"):
        load_redirects({"source": "/a"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^load_redirects\(\): rule 0: key 'to' is not a Redirect option"):
        load_redirects([{"source": "/a", "to": "/b"}])
    with pytest.raises(ValueError, match=r"^load_redirects\(\): Redirect rule 0: query='drop' does not apply"):
        load_redirects([{"kind": "host", "source": "www.example.com", "target": "example.com", "query": "drop"}])
