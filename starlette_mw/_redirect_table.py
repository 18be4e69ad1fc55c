"""The checked rules of a `RedirectMiddleware`, indexed so that a request's cost barely grows with their number.

Exact paths are a dictionary look-up. Starlette-path and regex rules are grouped by the literal
first segment of their path ('/blog/{slug}' under 'blog'), so a request tries the few rules of its
own first segment plus those that start with a parameter or an opaque regex.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, quote_from_bytes, urlencode

from starlette.routing import compile_path

from starlette_mw._redirect_rules import (
    GONE,
    HOST,
    PATH_SAFE,
    QUERY_MODES,
    Redirect,
    Status,
    Template,
    check_host,
    check_status,
    compile_source,
)

# A regex whose text starts with a literal first segment: '^/u/(?P<id>\d+)$' under 'u'. A '|'
# anywhere could put another branch first, so such patterns are tried for every request.
_REGEX_HEAD = re.compile(r"\^?/([A-Za-z0-9_-]+)(?:/|\$?$)")
# Query bytes as sent, made safe for a header: anything outside these is percent-encoded.
_QUERY_SAFE = "%&=+/?:@!$'()*,;-._~"
# A relative Location the client will keep on this host: one '/', then anything printable but '/' or '\'.
SAFE_RELATIVE = re.compile(r"/(?:[!-.0-\[\]-~][!-~]*)?")
_SAMPLES = {
    "StringConvertor": "x",
    "PathConvertor": "x/y",
    "IntegerConvertor": "1",
    "FloatConvertor": "1.5",
    "UUIDConvertor": "00000000-0000-0000-0000-000000000000",
}
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer: a status and Location (None for 410), and whether only in place of a 404."""

    status: int
    location: str | None
    if_not_found: bool = False
    check_route: bool = False
    rule: int = -1  # the rule's index; -1 for the trailing-slash policy
    via_slash: bool = False  # the rule matched the path with its trailing slash added or stripped


class PathRule:
    __slots__ = (
        "exact",
        "first_segment",
        "gone",
        "if_not_found",
        "index",
        "methods",
        "query",
        "regex",
        "required",
        "sample",
        "statuses",
        "template",
    )

    def __init__(self, index: int, rule: Redirect, default: tuple[int, int]) -> None:
        where = f"Redirect rule {index}"
        self.index = index
        self.exact, self.regex, groups = compile_source(rule.source, where)
        self.sample = _sample(rule.source)
        self.first_segment = _first_segment(rule.source, self.regex)
        self.statuses = default if rule.status is None else check_status(rule.status, where, gone_allowed=True)
        self.gone = self.statuses[0] == GONE
        if rule.target is None and not self.gone:
            raise ValueError(f"{where}: {rule.describe()} has no target; give one, or status=410 for Gone.")
        if rule.target is not None and self.gone:
            raise ValueError(f"{where}: status 410 (Gone) sends no Location, so drop the target {rule.target!r}.")
        self.template = None if rule.target is None else Template(_text(rule.target, where, "target"), where)
        if self.template is not None:
            for name in sorted(self.template.groups - groups):
                source = rule.source.pattern if isinstance(rule.source, re.Pattern) else rule.source
                raise ValueError(
                    f"{where}: target {rule.target!r} names group {name!r}, which pattern {source!r} does not define."
                )
        self.required = self.template is not None and None in self.template.params.values()
        if rule.query not in QUERY_MODES:
            raise ValueError(f"{where}: query={rule.query!r} is not one of 'keep', 'drop' or 'merge'.")
        self.query = rule.query
        self.methods = _methods(rule.methods, where)
        if not isinstance(rule.if_not_found, bool):
            raise TypeError(f"{where}: if_not_found={rule.if_not_found!r} must be True or False.")
        self.if_not_found = rule.if_not_found
        if rule.port is not None:
            raise ValueError(f"{where}: port={rule.port!r} is for scheme rules only; put a port in an absolute target.")

    def match(self, path: str, method: str | None, query_string: bytes) -> dict[str, str] | None:
        if self.methods is not None and method is not None and method not in self.methods:
            return None
        groups: dict[str, str] = {}
        if self.regex is not None:
            found = self.regex.fullmatch(path)
            if found is None:
                return None
            groups = {str(number): value or "" for number, value in enumerate(found.groups(), 1)}
            groups.update((name, value or "") for name, value in found.groupdict().items())
        if self.required and method is not None and self.template is not None:
            present = parse_query(query_string)
            if any(default is None and name not in present for name, default in self.template.params.items()):
                return None
        return groups


def parse_query(query_string: bytes) -> dict[str, str]:
    # As Starlette's request.query_params: blank values kept, the last of a repeated name wins.
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def _text(value: object, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: {what} {value!r} has type {type(value).__name__}; use a string.")
    return value


def _methods(methods: object, where: str) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str) or not all(isinstance(method, str) and method.isalpha() for method in methods):  # type: ignore[attr-defined]
        raise TypeError(f"{where}: methods={methods!r} must be a list of method names, such as ['GET', 'POST'].")
    upper = frozenset(method.upper() for method in methods)  # type: ignore[attr-defined]
    if not upper:
        raise ValueError(f"{where}: methods=[] matches no request; pass None (the default) for every method.")
    return upper | {"HEAD"} if "GET" in upper else upper


def _sample(source: object) -> str | None:
    """A path the source matches, for the loop check; None for a regex, which may match anything."""
    if not isinstance(source, str):
        return None
    if "{" not in source:
        return source
    _, path_format, convertors = compile_path(source)
    return path_format.format(**{name: _SAMPLES.get(type(c).__name__, "x") for name, c in convertors.items()})


def _first_segment(source: object, regex: re.Pattern[str] | None) -> str | None:
    """The literal first path segment of every path the source matches, or None if unknown."""
    if isinstance(source, str):
        segment = source[1:].split("/", 1)[0]
        return None if "{" in segment else segment
    if regex is None:
        return None
    head = _REGEX_HEAD.match(regex.pattern)
    if head is None or "|" in regex.pattern or regex.flags & re.IGNORECASE:
        return None
    return head.group(1)


class RuleTable:
    """Finds the first rule that applies to a request, and what to answer."""

    def __init__(
        self,
        rules: Sequence[Redirect],
        *,
        status: Status,
        trailing_slash: str | None,
        hosts: Sequence[str],
    ) -> None:
        default = check_status(status, "RedirectMiddleware", gone_allowed=False)
        self.default = default
        self.trailing_slash = trailing_slash
        self.path_rules: list[PathRule] = []
        self.host_rules: dict[str, tuple[int, str, str | None, tuple[int, int]]] = {}
        self.scheme_rules: dict[str, tuple[int, str, str | None, tuple[int, int]]] = {}
        self.hosts = {check_host(host, "hosts=") for host in hosts}
        for index, rule in enumerate(rules):
            if not isinstance(rule, Redirect):
                raise TypeError(
                    f"Redirect rule {index}: {rule!r} has type {type(rule).__name__}; use starlette_mw.Redirect(...)"
                    ", or load a list of dicts with starlette_mw.load_redirects()."
                )
            if rule.kind == "path":
                self.path_rules.append(PathRule(index, rule, default))
            elif rule.kind in ("host", "scheme"):
                self._add_origin_rule(index, rule, default)
            else:
                raise ValueError(f"Redirect rule {index}: kind={rule.kind!r} is not 'path', 'host' or 'scheme'.")
        if self.scheme_rules and not self.hosts:
            index = min(entry[0] for entry in self.scheme_rules.values())
            raise ValueError(
                f"Redirect rule {index}: a scheme rule builds an absolute Location, and the host in it must be one "
                "the site is configured for, never the request's Host header; pass hosts=['example.com'] to "
                "RedirectMiddleware."
            )
        self.exact: dict[str, tuple[PathRule, ...]] = {}
        buckets: dict[str, list[PathRule]] = {}
        wildcards: list[PathRule] = []
        for path_rule in self.path_rules:
            if path_rule.exact is not None:
                self.exact[path_rule.exact] = (*self.exact.get(path_rule.exact, ()), path_rule)
            else:
                segment = path_rule.first_segment
                (wildcards if segment is None else buckets.setdefault(segment, [])).append(path_rule)
        self.wildcards = tuple(wildcards)
        self.buckets = {
            segment: tuple(sorted([*bucket, *wildcards], key=lambda rule: rule.index))
            for segment, bucket in buckets.items()
        }
        self.has_origin_rules = bool(self.host_rules or self.scheme_rules)

    def _add_origin_rule(self, index: int, rule: Redirect, default: tuple[int, int]) -> None:
        where = f"Redirect rule {index}"
        statuses = default if rule.status is None else check_status(rule.status, where, gone_allowed=False)
        if rule.port is not None and (
            rule.kind != "scheme" or isinstance(rule.port, bool) or not isinstance(rule.port, int)
        ):
            raise ValueError(f"{where}: port={rule.port!r} is for scheme rules only, and must be a whole number.")
        if rule.port is not None and not 0 < rule.port < 65536:
            raise ValueError(f"{where}: port={rule.port!r} is not a TCP port; use one from 1 to 65535.")
        if rule.kind == "host":
            source, target = check_host(rule.source, where), check_host(rule.target, where)
            if HOST.fullmatch(source)["port"]:  # type: ignore[index]
                raise ValueError(f"{where}: host rule source {source!r} has a port; match on the name alone.")
            name, port = HOST.fullmatch(target).group("name", "port")  # type: ignore[union-attr]
            if name == source:
                raise ValueError(f"{where}: host rule {source!r} -> {target!r} redirects a host to itself.")
            if source in self.host_rules:
                raise ValueError(f"{where}: host {source!r} already has rule {self.host_rules[source][0]}.")
            self.host_rules[source] = (index, name, port, statuses)
            self.hosts.update((source, name))
        else:
            if (
                rule.source not in ("http", "https")
                or rule.target not in ("http", "https")
                or rule.source == rule.target
            ):
                raise ValueError(
                    f"{where}: scheme rule {rule.source!r} -> {rule.target!r} must go from http to https or back; "
                    "use Redirect.scheme('https')."
                )
            source = str(rule.source)
            if source in self.scheme_rules:
                raise ValueError(f"{where}: scheme {source!r} already has rule {self.scheme_rules[source][0]}.")
            port = None if rule.port is None or str(rule.port) == _DEFAULT_PORTS[rule.target] else str(rule.port)
            self.scheme_rules[source] = (index, rule.target, port, statuses)

    def find(self, path: str, method: str | None, query_string: bytes) -> tuple[PathRule, dict[str, str]] | None:
        """The first path rule that matches, with its captured groups."""
        best: tuple[PathRule, dict[str, str]] | None = None
        for rule in self.exact.get(path, ()):
            groups = rule.match(path, method, query_string)
            if groups is not None:
                best = rule, groups
                break
        end = path.find("/", 1)
        for rule in self.buckets.get(path[1:end] if end > 0 else path[1:], self.wildcards):
            if best is not None and rule.index > best[0].index:
                break
            groups = rule.match(path, method, query_string)
            if groups is not None:
                return rule, groups
        return best

    def origin(self, scheme: str, host: str | None) -> tuple[int, str, tuple[int, int]] | None:
        """(first rule's index, new origin, statuses) when a host or scheme rule applies."""
        found = None if host is None else HOST.fullmatch(host.lower().removesuffix("."))
        if found is None:
            return None
        name, port = found.group("name", "port")
        index: int | None = None
        statuses = self.default
        host_rule = self.host_rules.get(name)
        if host_rule is not None:
            index, name, target_port, statuses = host_rule
            port = target_port or port
        scheme_rule = self.scheme_rules.get(scheme) if name in self.hosts else None
        if scheme_rule is not None:
            if index is None or scheme_rule[0] < index:
                index, statuses = scheme_rule[0], scheme_rule[3]
            scheme, port = scheme_rule[1], scheme_rule[2]
        if index is None:
            return None
        if port is not None and port == _DEFAULT_PORTS.get(scheme):
            port = None
        return index, f"{scheme}://{name}" + (f":{port}" if port else ""), statuses

    def decide(
        self,
        method: str | None,
        scheme: str,
        host: str | None,
        path: str,
        root_path: str,
        query_string: bytes,
        slash: bool = True,
    ) -> Decision | None:
        """The answer to a request, or None to pass it on. `method=None` (the loop check) matches any rule."""
        origin = self.origin(scheme, host) if self.has_origin_rules else None
        found = self.find(path, method, query_string)
        get = method in ("GET", "HEAD", None)
        if found is not None:
            rule, groups = found
            if rule.template is None:
                if origin is None:
                    return Decision(GONE, None, rule.if_not_found, rule=rule.index)
            elif origin is None or (not rule.if_not_found and not rule.template.origin):
                params = parse_query(query_string) if rule.template.params else {}
                rendered = rule.template.render(groups, params, sample=method is None)
                if rendered is not None:
                    location = self._location(rendered, rule.query, root_path, query_string, origin)
                    if location is not None:
                        return Decision(rule.statuses[0 if get else 1], location, rule.if_not_found, rule=rule.index)
        if origin is not None:
            index, new_origin, statuses = origin
            location = new_origin + quote(root_path + path, safe=PATH_SAFE) + _query("", query_string)
            return Decision(statuses[0 if get else 1], location, rule=index)
        if self.trailing_slash is None or path == "/" or not slash:
            return None
        if self.trailing_slash == "append":
            if path.endswith("/"):
                return None
            other = path + "/"
        elif path.endswith("/"):
            other = path.rstrip("/") or "/"
        else:
            return None
        # A rule for the other form answers at once: one redirect rather than two.
        ruled = self.decide(method, scheme, host, other, root_path, query_string, slash=False)
        if ruled is not None and not ruled.if_not_found:
            return replace(ruled, via_slash=True)
        location = quote(root_path + other, safe=PATH_SAFE) + _query("", query_string)
        if not SAFE_RELATIVE.fullmatch(location.partition("?")[0]):
            return None
        return Decision(self.default[0 if get else 1], location, check_route=True)

    def _location(
        self,
        rendered: str,
        mode: str,
        root_path: str,
        query_string: bytes,
        origin: tuple[int, str, tuple[int, int]] | None,
    ) -> str | None:
        target_path, question, target_query = rendered.partition("?")
        if mode == "keep":
            query = _query(target_query, query_string)
        elif mode == "drop" or not query_string:
            query = "?" + target_query if question else ""
        else:
            merged = dict(parse_qsl(target_query, keep_blank_values=True))
            pairs = list(merged.items()) + [
                (name, value)
                for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                if name not in merged
            ]
            query = "?" + urlencode(pairs) if pairs else ""
        if target_path.startswith("/"):
            target_path = quote(root_path, safe=PATH_SAFE) + target_path
            # Whatever the captured values held, the client must stay on this host.
            if not SAFE_RELATIVE.fullmatch(target_path):
                return None
            if origin is not None:
                return origin[1] + target_path + query
        return target_path + query


def _query(target_query: str, query_string: bytes) -> str:
    """The target's query, then the request's (made safe for a header), after a '?' if any."""
    request_query = quote_from_bytes(query_string, safe=_QUERY_SAFE) if query_string else ""
    joined = "&".join(part for part in (target_query, request_query) if part)
    return "?" + joined if joined else ""
