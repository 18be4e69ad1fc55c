"""The allow_origin_regex check against a reference: patterns generated from a grammar of hosts.

Each pattern is built from pieces whose meaning the generator knows: the literal registrable
domains it spells out, and whether a piece lets in another site (a class, a bounded repeat or an
optional part glued to the domain's own label or to its top-level domain). The reference is the
Public Suffix List read directly. Accepted patterns: every origin hypothesis generates from the
regex has one of the literal registrable domains. Refused ones: the origin the message names is
matched by the regex and belongs to another registrable domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import event, given
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from starlette_mw import CORSPolicy
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
