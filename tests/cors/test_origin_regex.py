"""The allow_origin_regex check against a reference: patterns generated from a grammar of hosts.

Each pattern is built from pieces whose meaning the generator knows: the literal registrable
domains it spells out, and whether a piece lets in another site (a class, a bounded repeat or an
optional part glued to the domain's own label or to its top-level domain). The reference is the
Public Suffix List read directly. Accepted patterns: every origin hypothesis generates from the
regex has one of the literal registrable domains. Refused ones: the origin the message names is
matched by the regex and belongs to another registrable domain.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList
from starlette.types import Message, Receive, Scope, Send

from starlette_mw import CORSMiddleware, CORSPolicy
from starlette_mw._http import is_origin

PSL = PublicSuffixList()


@dataclass(frozen=True)
class Piece:
    regex: str
    spellings: tuple[str, ...]  # what it matches, if it is literal
    literal: bool


def piece(regex: str, *spellings: str) -> Piece:
    return Piece(regex, spellings, literal=True)


def hostile(regex: str) -> Piece:
    return Piece(regex, (), literal=False)


SCHEMES = st.sampled_from(["https", "https?", "http", "[a-z]+"])
SUBDOMAINS = st.sampled_from(
    ["", r"[a-z0-9-]+\.", r"(app|www)\.", r"(www\.)?", r"([a-z0-9]+\.)*", r".*\.", r"pr-\d+\.preview\.", r"[a-z]\."]
)
NAMES = st.sampled_from(
    [
        piece("example", "example"),
        piece("(example|sample)", "example", "sample"),
        piece(r"ex\-ample", "ex-ample"),
        piece("(?:my)?example", "myexample", "example"),  # both spelled out: two sites, both named
        hostile("[a-z]{0,4}example"),  # issue 15
        hostile("(www)?[a-z]?example"),
        hostile("ex[a-z]mple"),
        hostile("example[0-9]{1,2}"),
        hostile("[a-z]+"),
        piece("(ab){1,3}", "ab", "abab", "ababab"),  # a bounded repeat of literal text spells each out
        hostile("(ab)+"),
    ]
)
TOP_LEVEL = st.sampled_from(
    [
        piece(r"\.com", "com"),
        piece(r"\.co\.uk", "co.uk"),
        piece(r"\.(com|org)", "com", "org"),
        piece(r"\.co(m|\.uk)", "com", "co.uk"),
        piece(r"\.(?i:COM)", "com"),
        hostile(r"\.[a-z]{2,3}"),  # issue 15
        hostile(r"\.c[a-z]m"),
        hostile(r"\.co(\.[a-z]{2})?"),
        hostile(r"(\.[a-z]+)+"),
    ]
)
PORTS = st.sampled_from(["", r"(:[0-9]+)?", ":8443", r"(:\d{2,5})?"])


@dataclass(frozen=True)
class Pattern:
    regex: str
    sites: frozenset[str]  # the registrable domains it spells out
    safe: bool


@st.composite
def patterns(draw: st.DrawFn) -> Pattern:
    name, top = draw(NAMES), draw(TOP_LEVEL)
    regex = f"^{draw(SCHEMES)}://{draw(SUBDOMAINS)}{name.regex}{top.regex}{draw(PORTS)}$"
    sites = frozenset(f"{label}.{suffix}" for label in name.spellings for suffix in top.spellings)
    return Pattern(regex, sites, name.literal and top.literal)


def registrable(origin: str) -> str | None:
    host = origin.partition("://")[2].rpartition(":")[0] or origin.partition("://")[2]
    return PSL.privatesuffix(host.removesuffix("."))


def refusal(pattern: str) -> str | None:
    try:
        CORSPolicy(allow_origin_regex=pattern, allow_credentials=True)
    except ValueError as error:
        return str(error)
    return None


@given(pattern=patterns(), data=st.data())
def test_the_check_decides_as_the_public_suffix_list_does(pattern: Pattern, data: st.DataObject) -> None:
    regex = re.compile(pattern.regex)
    message = refusal(pattern.regex)
    if message is None:
        event("accepted")
        assert pattern.safe, f"{pattern.regex} lets in another site, yet it was accepted"
        origins = data.draw(st.lists(st.from_regex(regex, fullmatch=True), min_size=1, max_size=8), label="origins")
        for origin in filter(is_origin, origins):
            assert registrable(origin) in pattern.sites, (pattern.regex, origin)
        return
    event("refused")
    assert not pattern.safe, f"{pattern.regex} was refused: {message}"
    witness = re.search(r" matches '([^']+)'", message)
    assert witness is not None, message
    origin = witness.group(1)
    assert regex.fullmatch(origin), (pattern.regex, origin)
    assert is_origin(origin), origin
    assert registrable(origin) not in pattern.sites, (pattern.regex, origin)


@given(pattern=patterns())
def test_every_fix_a_refusal_suggests_is_accepted(pattern: Pattern) -> None:
    message = refusal(pattern.regex)
    if message is None:
        return
    for suggested in re.findall(r"allow_origin_regex=r'([^']+)'", message):
        assert refusal(suggested) is None, suggested
    for suggested in re.findall(r"allow_origins=\['([^']+)'\]", message):
        CORSPolicy(allow_origins=[suggested], allow_credentials=True)


@given(domain=st.sampled_from(["com", "co.uk", "github.io", "example.com", "example.co.uk", "app.localhost"]))
def test_a_subdomain_wildcard_is_refused_exactly_over_a_public_suffix(domain: str) -> None:
    public = PSL.privatesuffix(domain) is None
    message = None
    try:
        CORSPolicy(allow_origins=[f"https://*.{domain}"])
    except ValueError as error:
        message = str(error)
    assert (message is not None) == public, message


# -- Deciding a request's Origin: as `re` does, without its backtracking --------------------------------


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def allowed(middleware: CORSMiddleware, origin: str, *, preflight: bool) -> bool:
    """Whether the middleware's answer to a request (or preflight) from `origin` allows it."""
    messages: list[Message] = []
    headers = [(b"origin", origin.encode("latin-1"))]
    if preflight:
        headers.append((b"access-control-request-method", b"GET"))

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "OPTIONS" if preflight else "GET", "path": "/", "root_path": "",
             "query_string": b"", "headers": headers, "scheme": "https"}  # fmt: skip
    asyncio.run(middleware(scope, receive, send))
    return (b"access-control-allow-origin", origin.encode("latin-1")) in messages[0]["headers"]


def near_misses(origin: str) -> st.SearchStrategy[str]:
    """`origin` with a character dropped, doubled or changed: strings on either side of the pattern."""
    return st.tuples(st.integers(0, max(len(origin) - 1, 0)), st.sampled_from(["", "a", "-", ".", "1", ":", "A"])).map(
        lambda change: origin[: change[0]] + change[1] + origin[change[0] + (change[1] != "a") :]
    )


@given(pattern=patterns(), data=st.data(), preflight=st.booleans())
def test_the_middleware_allows_exactly_the_origins_the_pattern_fullmatches(
    pattern: Pattern, data: st.DataObject, preflight: bool
) -> None:
    regex = re.compile(pattern.regex)
    matched = data.draw(st.lists(st.from_regex(regex, fullmatch=True), min_size=1, max_size=4), label="origins")
    origins = matched + [data.draw(near_misses(origin), label="near miss") for origin in matched]
    try:
        middleware = CORSMiddleware(_ok, allow_origin_regex=pattern.regex)
    except ValueError:
        event("refused")
        return
    for origin in origins:
        if not origin.isascii() or "\n" in origin:
            continue  # not a header value a server passes on
        expected = is_origin(origin) and regex.fullmatch(origin) is not None
        event("allowed" if expected else "not allowed")
        assert allowed(middleware, origin, preflight=preflight) == expected, (pattern.regex, origin)


# Repeats inside repeats, which `re` answers by trying every way to split the text between them.
NESTED = ["(a+)+", "(a|a)*", "(a|aa)+", "([a-z]+)*", "(a+a+)+", "([a-z0-9-]+-?)+", r"([a-z0-9]+\.?)+"]


def test_an_origin_costs_its_length_whatever_repeats_the_pattern_nests() -> None:
    # In a child process: a regex that backtracks holds the interpreter, so only a process can be
    # given up on. Under `re`, each request here would take longer than the universe's age.
    cases = [
        (rf"^https://{nested}\.example\.com$", "https://" + "a" * size + tail)
        for nested in NESTED
        for size in (40, 290)
        for tail in ("", "!", ".example.co", "-")
    ]
    script = textwrap.dedent(
        """
        import json, sys
        sys.path[:0] = json.loads(sys.argv[2])
        from tests.cors.test_origin_regex import CORSMiddleware, _ok, allowed
        for pattern, origin in json.loads(sys.argv[1]):
            middleware = CORSMiddleware(_ok, allow_origin_regex=pattern)
            assert not allowed(middleware, origin, preflight=False)
            assert not allowed(middleware, origin, preflight=True)
            assert allowed(middleware, "https://aaa.example.com", preflight=True), pattern
        """
    )
    try:
        subprocess.run([sys.executable, "-c", script, json.dumps(cases), json.dumps(sys.path)], check=True, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("an Origin against a pattern with nested repeats did not get an answer: the regex backtracks")


@given(
    comment=st.text(alphabet="# abc|$^()", max_size=12).map(lambda text: "#" + text),
    spaces=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_a_verbose_pattern_ending_in_a_comment_keeps_the_subdomain_wildcards(comment: str, spaces: str) -> None:
    # The wildcard reaches Starlette as an alternative joined after the pattern, which a comment
    # of the pattern's last line must not swallow.
    pattern = rf"(?x) ^https:// app \.example\.com $ {spaces}{comment}"
    middleware = CORSMiddleware(_ok, allow_origins=["https://*.example.org"], allow_origin_regex=pattern)
    assert allowed(middleware, "https://app.example.com", preflight=False)
    assert allowed(middleware, "https://a.b.example.org", preflight=True)
    assert not allowed(middleware, "https://example.org", preflight=False)
