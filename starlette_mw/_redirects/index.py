"""Path rules once checked, and the index that finds the first one a request matches.

Exact paths are a dictionary look-up. Starlette-path and regex rules sit in a trie of path
segments: a literal segment is a dictionary edge, a one-segment parameter ('{slug}', '{id:int}')
a wildcard edge, and the rest of a source that the trie cannot split (a '{rest:path}', a segment
mixing text and a parameter, the opaque part of a regex) hangs the rule on the node reached so
far. A request walks the trie along its own segments and tries, in rule order, only the rules it
meets there; each is then checked against the whole path with its own regular expression, so the
trie only narrows the candidates. Rules that hang on the same node are tried one by one: 10,000
regexes under '/blog/' cost a '/blog/...' request 10,000 tries.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from operator import attrgetter

from starlette.convertors import CONVERTOR_TYPES
from starlette.routing import compile_path

from starlette_mw._http import TOKEN
from starlette_mw._paths import route_fullmatch
from starlette_mw._redirects.rules import (
    GONE,
    QUERY_MODES,
    Redirect,
    Template,
    check_status,
    compile_source,
    query_params,
)

# A one-segment parameter of a Starlette path: a wildcard edge of the trie unless it is ':path'.
_PARAMETER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*(?::(?P<convertor>[A-Za-z_][A-Za-z0-9_]*))?\}")
# A parameter's place in the path format Starlette's compile_path returns.
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Characters that stand for themselves in a regex and in a path segment.
_REGEX_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# After a '/', these make it optional, repeated or one branch of several: the segment before it
# is then not a prefix of every path the regex matches ('/item/?(\d+)' matches '/item5').
_QUANTIFIERS = frozenset("?*+{|")
# A method is an RFC 9110 token: '!#$%&'*+-.^_`|~', digits and letters ('M-SEARCH').
# Values the loop check fills parameters with: plain ones, then unlikely ones, which an exact
# rule for the same place ('/p/x' before '/p/{x}') does not take over.
_SAMPLES = (
    {
        "StringConvertor": "x",
        "PathConvertor": "x/y",
        "IntegerConvertor": "1",
        "FloatConvertor": "1.5",
        "UUIDConvertor": "00000000-0000-0000-0000-000000000000",
    },
    {
        "StringConvertor": "zq7",
        "PathConvertor": "zq7/zq8",
        "IntegerConvertor": "917",
        "FloatConvertor": "917.5",
        "UUIDConvertor": "00000000-0000-0000-0000-000000000917",
    },
)
_by_index = attrgetter("index")


class PathRule:
    """A checked path rule: how it matches a request, and the target it renders."""

    __slots__ = (
        "exact",
        "gone",
        "if_not_found",
        "index",
        "methods",
        "prefix",
        "query",
        "regex",
        "required",
        "samples",
        "source",
        "statuses",
        "template",
    )

    def __init__(self, index: int, rule: Redirect, default: tuple[int, int]) -> None:
        where = f"Redirect rule {index}"
        self.index = index
        self.source = rule.source.pattern if isinstance(rule.source, re.Pattern) else rule.source
        self.exact, self.regex, groups = compile_source(rule.source, where)
        self.samples = _samples(rule.source)
        self.prefix = _prefix(rule.source, self.regex)
        self.statuses = default if rule.status is None else check_status(rule.status, where, gone_allowed=True)
        self.gone = self.statuses[0] == GONE
        if rule.target is None and not self.gone:
            raise ValueError(f"{where}: source {self.source!r} has no target; give one, or status=410 for Gone.")
        if rule.target is not None and self.gone:
            raise ValueError(f"{where}: status 410 (Gone) sends no Location, so drop the target {rule.target!r}.")
        self.template = None if rule.target is None else Template(_text(rule.target, where, "target"), where)
        if self.template is not None:
            for name in sorted(self.template.groups - groups):
                raise ValueError(
                    f"{where}: target {rule.target!r} names group {name!r}, which pattern {self.source!r} does not "
                    "define."
                )
        self.required = frozenset(
            () if self.template is None else (name for name, default in self.template.params.items() if default is None)
        )
        if rule.query not in QUERY_MODES:
            raise ValueError(f"{where}: query={rule.query!r} is not one of 'keep', 'drop' or 'merge'.")
        self.query = rule.query
        self.methods = check_methods(rule.methods, where)
        if not isinstance(rule.if_not_found, bool):
            raise TypeError(f"{where}: if_not_found={rule.if_not_found!r} must be True or False.")
        self.if_not_found = rule.if_not_found
        if rule.port is not None:
            raise ValueError(f"{where}: port={rule.port!r} is for scheme rules only; put a port in an absolute target.")

    def match(self, path: str, method: str, query_string: bytes) -> dict[str, str] | None:
        if self.methods is not None and method not in self.methods:
            return None
        groups: dict[str, str] = {}
        if self.regex is not None:
            found = route_fullmatch(self.regex, path)
            if found is None:
                return None
            groups = {str(number): value or "" for number, value in enumerate(found.groups(), 1)}
            groups.update((name, value or "") for name, value in found.groupdict().items())
        if self.required:
            present = query_params(query_string)
            if any(name not in present for name in self.required):
                return None
        return groups

    def covers(self, other: PathRule) -> bool:
        """Whether this rule matches every request `other` matches at the same exact path."""
        methods_covered = self.methods is None or (other.methods is not None and other.methods <= self.methods)
        return methods_covered and not self.required


class _Node:
    __slots__ = ("ends", "hung", "literal", "wild")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.wild: _Node | None = None
        self.ends: list[PathRule] = []  # rules whose every segment led here: the path ends here
        self.hung: list[PathRule] = []  # rules whose rest the trie cannot split: any path through here


class PathIndex:
    """Finds the first path rule, in rule order, that matches a request."""

    def __init__(self, rules: Sequence[PathRule]) -> None:
        self.exact: dict[str, tuple[PathRule, ...]] = {}
        self.root = _Node()
        self.has_trie = False
        for rule in rules:
            if rule.exact is not None:
                for earlier in self.exact.get(rule.exact, ()):
                    if earlier.covers(rule):
                        raise ValueError(
                            f"Redirect rule {rule.index}: source {rule.exact!r} is already rule {earlier.index}'s, "
                            "which matches every request this one would; remove one, or limit the first with methods=."
                        )
                self.exact[rule.exact] = (*self.exact.get(rule.exact, ()), rule)
                continue
            self.has_trie = True
            node = self.root
            segments, complete = rule.prefix
            for segment in segments:
                if segment is None:
                    node.wild = node.wild or _Node()
                    node = node.wild
                else:
                    node = node.literal.setdefault(segment, _Node())
            (node.ends if complete else node.hung).append(rule)

    def candidates(self, path: str) -> list[PathRule]:
        """The trie's rules that may match `path`, in no particular order."""
        found: list[PathRule] = []
        nodes = [self.root]
        for segment in path[1:].split("/"):
            after: list[_Node] = []
            for node in nodes:
                found += node.hung
                child = node.literal.get(segment)
                if child is not None:
                    after.append(child)
                if node.wild is not None and segment:  # every convertor but ':path' needs a character
                    after.append(node.wild)
            nodes = after
            if not nodes:
                return found
        for node in nodes:
            found += node.hung
            found += node.ends
        return found

    def find(self, path: str, method: str, query_string: bytes) -> tuple[PathRule, dict[str, str]] | None:
        """The first path rule that matches, with its captured groups."""
        best: tuple[PathRule, dict[str, str]] | None = None
        # As a route: '/old' is also '/old' followed by a final newline, which the route's '$' lets
        # through (paths.route_fullmatch), so a rule cannot be stepped around with '%0A'.
        bare = path[:-1] if path[-1:] == "\n" else None
        for exact in (path, bare) if bare is not None else (path,):
            for rule in self.exact.get(exact, ()):
                groups = rule.match(exact, method, query_string)
                if groups is not None:
                    if best is None or rule.index < best[0].index:
                        best = rule, groups
                    break
        if not self.has_trie:
            return best
        found = self.candidates(path)
        if bare is not None:
            found = list(dict.fromkeys(found + self.candidates(bare)))
        if len(found) > 1:
            found.sort(key=_by_index)
        for rule in found:
            if best is not None and rule.index > best[0].index:
                break
            groups = rule.match(path, method, query_string)
            if groups is not None:
                return rule, groups
        return best


def _text(value: object, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: {what} {value!r} has type {type(value).__name__}; use a string.")
    return value


def check_methods(methods: object, where: str) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str) or not isinstance(methods, Iterable):
        raise TypeError(f"{where}: methods={methods!r} must be a list of method names, such as ['GET', 'POST'].")
    names = list(methods)
    for name in names:
        if not isinstance(name, str) or not TOKEN.fullmatch(name):
            raise TypeError(
                f"{where}: methods holds {name!r}, which is not a method name; use names such as ['GET', 'POST']."
            )
    upper = frozenset(name.upper() for name in names)
    if not upper:
        raise ValueError(f"{where}: methods=[] matches no request; pass None (the default) for every method.")
    return upper | {"HEAD"} if "GET" in upper else upper


def _samples(source: object) -> tuple[str, ...]:
    """Paths the source matches, for the loop check; none for a regex, which may match anything."""
    if not isinstance(source, str):
        return ()
    if "{" not in source:
        return (source,)
    _, path_format, convertors = compile_path(source)
    # Not str.format: braces that are no parameter ('/{1}', '/{?q}') stay in the format as literal
    # text, which the route matches as it is.
    samples = []
    for values in _SAMPLES:
        fill = {name: values.get(type(convertor).__name__, "x") for name, convertor in convertors.items()}
        samples.append(_FIELD.sub(functools.partial(_fill, fill), path_format))
    return tuple(samples)


def _fill(values: dict[str, str], field: re.Match[str]) -> str:
    return values.get(field[1], field[0])


def _prefix(source: object, regex: re.Pattern[str] | None) -> tuple[list[str | None], bool]:
    """The segments every path the source matches starts with (None: any one segment), and whether
    they are the whole source."""
    if isinstance(source, str):
        segments: list[str | None] = []
        for segment in source[1:].split("/"):
            if "{" not in segment:
                segments.append(segment)
                continue
            parameter = _PARAMETER.fullmatch(segment)
            # ':path' spans segments; a convertor that matches '' would match the empty segment too.
            if parameter is None or re.fullmatch(CONVERTOR_TYPES[parameter["convertor"] or "str"].regex, ""):
                return segments, False
            segments.append(None)
        return segments, True
    if regex is None or regex.flags & (re.IGNORECASE | re.VERBOSE):
        return [], False
    return _regex_prefix(regex.pattern), False


def _regex_prefix(pattern: str) -> list[str | None]:
    """The literal segments a regex's text starts with ('/u/(\\d+)' -> ['u']), each followed by a
    plain '/'; none where a '|' could put another branch first."""
    if "|" in pattern:
        return []
    text = pattern.removeprefix("^")
    segments: list[str | None] = []
    if not text.startswith("/") or text[1:2] in _QUANTIFIERS:
        return segments
    start = 1
    while True:
        end = start
        while end < len(text) and text[end] in _REGEX_LITERAL:
            end += 1
        if end > start and text[end:] in ("", "$"):
            return [*segments, text[start:end]]  # the whole regex is a literal path
        if text[end : end + 1] != "/" or text[end + 1 : end + 2] in _QUANTIFIERS or end == start:
            return segments
        segments.append(text[start:end])
        start = end + 1
