r"""`check_origin_regex`: refuses an `allow_origin_regex` that lets other sites in.

Reading the pattern's text misses every way of writing the same mistake (`(app|www).example`,
`[^/]*`, `.{0,40}`...), so the check looks at what the pattern matches instead. It walks the
pattern's parsed tree and builds sample origins that the pattern matches: the first alternative
of every group, then each other alternative in turn, repeats at their minimum count (and once
more for an optional one). Every sample must be an origin a browser sends, and the pattern must
not match what an attacker can register next to it: the sample host with labels after it, with
a '.' replaced by a letter, with a look-alike domain name or another top-level domain. The
pattern is also tried against `null` and unrelated origins.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

from starlette_mw._origins import is_origin

__all__ = ["check_origin_regex"]

# The re module's own parser (private, but the same module from 3.11 on): its tree says what the
# pattern matches without this module re-reading regex syntax.
_sre: Any = importlib.import_module("re._parser")

# More samples than this means a pattern better written as a list of origins.
_MAX_SAMPLES = 200
_MAX_REPEAT = 255  # a host name has at most 253 characters
# What a sample picks for a class: a letter, else a digit (not '0' first: a port has no leading zero).
_CHARACTERS = string.ascii_lowercase + "1234567890-." + string.punctuation + string.ascii_uppercase + " "
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: re.compile(r"\d"),
    _sre.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    _sre.CATEGORY_SPACE: re.compile(r"\s"),
    _sre.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    _sre.CATEGORY_WORD: re.compile(r"\w"),
    _sre.CATEGORY_NOT_WORD: re.compile(r"\W"),
}
_BEGINNINGS = (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING)
_ENDS = (_sre.AT_END, _sre.AT_END_STRING)
_UNSUPPORTED = {
    _sre.ASSERT: "a lookahead or lookbehind",
    _sre.ASSERT_NOT: "a lookahead or lookbehind",
    _sre.GROUPREF: "a backreference",
    _sre.GROUPREF_EXISTS: "a conditional group",
}
# Origins no pattern meant for some sites should match.
_STRANGERS = ("https://attacker.invalid", "http://attacker.invalid", "http://attacker.invalid:8080")
_EXAMPLE = r"r'^https://(app|admin)\.example\.com$'"


class _Unsupported(Exception):
    """A part of the pattern the samples cannot be built for; the argument says which."""


def _pick(accepts: Callable[[str], bool]) -> str:
    for char in _CHARACTERS:
        if accepts(char):
            return char
    raise _Unsupported("a class that no letter, digit or punctuation matches")


def _in_class(char: str, items: list[tuple[Any, Any]]) -> bool:
    found = negated = False
    for op, value in items:
        if op is _sre.NEGATE:
            negated = True
        elif op is _sre.LITERAL:
            found = found or char == chr(value)
        elif op is _sre.RANGE:
            found = found or value[0] <= ord(char) <= value[1]
        elif op is _sre.CATEGORY and value in _CATEGORIES:
            found = found or _CATEGORIES[value].fullmatch(char) is not None
        else:
            raise _Unsupported(f"a class with {op}")
    return found != negated


def _choices(op: Any, value: Any, wildcard: bool) -> list[str]:
    """What one node of the tree matches: its first sample, then one per other alternative."""
    if op is _sre.LITERAL:
        return [chr(value)]
    if op is _sre.NOT_LITERAL:
        return [_pick(lambda char: char != chr(value))]
    if op is _sre.ANY:
        # A lone '.' is most often a dot meant literally, as in 'app.example': sampled as '.', the
        # check below sees that a letter fits there too. Repeated ('.*', '.+'), it is a wildcard.
        return ["a" if wildcard else "."]
    if op is _sre.IN:
        return [_pick(lambda char: _in_class(char, value))]
    if op is _sre.AT:
        if value in (_sre.AT_BOUNDARY, _sre.AT_NON_BOUNDARY):
            raise _Unsupported(r"'\b' or '\B'")
        return [""]  # where the anchors are is checked apart; the samples are matched in full
    if op is _sre.BRANCH:
        return [sample for branch in value[1] for sample in _samples(branch)]
    if op is _sre.SUBPATTERN:
        return _samples(value[3])
    if op is _sre.ATOMIC_GROUP:
        return _samples(value)
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
        least, _, body = value
        if least > _MAX_REPEAT:
            raise _Unsupported(f"a repeat of at least {least}")
        inner = _samples(body, wildcard=len(body) == 1 and body[0][0] is _sre.ANY)
        return ["", *inner] if least == 0 else [sample * least for sample in inner]
    raise _Unsupported(_UNSUPPORTED.get(op, f"{op}"))


def _samples(items: list[tuple[Any, Any]], wildcard: bool = False) -> list[str]:
    """Strings a sequence of nodes matches: each node's first choice, then each other choice of one node."""
    choices = [_choices(op, value, wildcard) for op, value in items]
    first = [node[0] for node in choices]
    samples = ["".join(first)]
    for index, node in enumerate(choices):
        samples.extend("".join([*first[:index], other, *first[index + 1 :]]) for other in node[1:])
        if len(samples) > _MAX_SAMPLES:
            raise _Unsupported(f"more than {_MAX_SAMPLES} alternatives")
    return samples


def _anchored(items: list[tuple[Any, Any]], at: int, anchors: tuple[Any, ...]) -> bool:
    """Whether every way through `items` starts (`at` 0) or ends (`at` -1) with one of `anchors`."""
    if not items:
        return False
    op, value = items[at]
    if op is _sre.SUBPATTERN:
        return _anchored(value[3], at, anchors)
    if op is _sre.BRANCH:  # (the parser moves what all alternatives start with out of them)
        return all(_anchored(branch, at, anchors) for branch in value[1])
    return op is _sre.AT and value in anchors


def _neighbours(origin: str) -> Iterator[tuple[str, str]]:
    """Origins an attacker can hold next to `origin`, each with the kind of mistake that lets it match."""
    scheme, _, authority = origin.partition("://")
    if authority.startswith("["):  # an IPv6 address has no neighbours
        return
    host, colon, port = authority.partition(":")

    def origin_of(other: str) -> str:
        return f"{scheme}://{other}{colon}{port}"

    for tail in (".attacker.invalid", ".attacker"):
        yield "follow", origin_of(host + tail)
    for index, char in enumerate(host):
        if char == ".":
            yield "dot", origin_of(f"{host[:index]}x{host[index + 1 :]}")
    labels = host.split(".")
    if len(labels) >= 2 and not all(label.isdigit() for label in labels):
        yield "look-alike", origin_of(".".join([*labels[:-2], "attacker" + labels[-2], labels[-1]]))
        yield "top-level", origin_of(".".join([*labels[:-1], "attacker"]))


def _refusal(pattern: str, kind: str, sample: str, other: str) -> str:
    start = f"allow_origin_regex={pattern!r}"
    if kind == "follow":
        return (
            f"{start} lets anything follow the host, so it matches {other!r} as well as {sample!r}; end the "
            r"pattern right after the host and port, as in r'^https://app\.example\.com(:[0-9]+)?$'."
        )
    if kind == "dot":
        return (
            f"{start} has a '.' that matches any character, so it matches {other!r} (a domain anyone can "
            rf"register) as well as {sample!r}; escape the dot: write '\.' for each '.' of a host name."
        )
    if kind == "look-alike":
        return (
            f"{start} matches {other!r}, a look-alike of {sample!r} that anyone can register; put '\\.' before the "
            r"site's own domain, as in r'^https://[a-z0-9-]+\.example\.com$', or list the subdomains, as in "
            f"{_EXAMPLE}."
        )
    return (
        f"{start} matches {other!r}, as well as {sample!r}: it leaves the top-level domain open, and anyone can "
        r"register the name under another one; name it, as in r'^https://app\.example\.(com|org)$'."
    )


def check_origin_regex(pattern: str, regex: re.Pattern[str]) -> None:
    """A ValueError naming an origin `regex` wrongly allows, and the fix, if there is one."""
    items = list(_sre.parse(pattern))
    # Starlette matches the whole origin, but the same pattern in a proxy's or another framework's
    # configuration is searched; a pattern that says where it starts and ends is safe in both.
    if not (_anchored(items, 0, _BEGINNINGS) and _anchored(items, -1, _ENDS)):
        body = pattern.removeprefix("^")
        body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
        anchored = f"^(?:{body})$" if len(items) == 1 and items[0][0] is _sre.BRANCH else f"^{body}$"
        raise ValueError(
            f"allow_origin_regex={pattern!r} is not anchored; start it with '^' and end it with '$', "
            f"as in {anchored!r}, so that it cannot match inside a longer origin."
        )
    # Starlette matches the whole origin (fullmatch); so does every check here.
    for stranger in _STRANGERS:
        if regex.fullmatch(stranger):
            raise ValueError(
                f"allow_origin_regex={pattern!r} matches any origin, such as {stranger!r}; name the sites, "
                r"as in r'^https://[a-z0-9-]+\.example\.com$', or use allow_origins=['*'] without credentials."
            )
    if regex.fullmatch("null"):
        raise ValueError(
            f"allow_origin_regex={pattern!r} matches 'null', which any page can send (from a sandboxed iframe, "
            "say), so it would allow every site; leave 'null' out."
        )
    try:
        samples = _samples(items)
    except _Unsupported as error:
        samples, unsupported = [], str(error)
    else:
        # A case-insensitive pattern matches the lower case that browsers send too.
        samples = [sample.lower() if regex.fullmatch(sample.lower()) else sample for sample in samples]
        unsupported = "" if all(map(regex.fullmatch, samples)) else r"'\b', '\B' or an anchor inside the pattern"
    if unsupported:
        raise ValueError(
            f"allow_origin_regex={pattern!r} uses {unsupported}, so the origins it matches cannot be checked; "
            f"write a simpler pattern (literal text, classes such as [a-z0-9-]+, groups with '|', '?' and '+'), "
            f"as in {_EXAMPLE}, or list the origins in allow_origins."
        )
    for sample in dict.fromkeys(samples):
        if not is_origin(sample):
            raise ValueError(
                f"allow_origin_regex={pattern!r} matches {sample!r}, which is not an origin a browser would send "
                "(scheme://host[:port] in lower case, host parts of letters, digits and '-', no default port), so "
                r"it is wider than the origins it is for; match each part of the host with a class such as "
                rf"[a-z0-9-]+, as in r'^https://[a-z0-9-]+\.example\.com$', or list the origins in allow_origins."
            )
        for kind, other in _neighbours(sample):
            if regex.fullmatch(other):
                raise ValueError(_refusal(pattern, kind, sample, other))
