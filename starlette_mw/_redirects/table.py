"""The checked rules of a `RedirectMiddleware`, and the answer to a request: which rule, what Location.

Path rules are found through `PathIndex` (see `index.py`); host and scheme rules are
dictionaries keyed by the request's host name and scheme.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, quote_from_bytes, unquote

from starlette_mw._http import DEFAULT_PORTS
from starlette_mw._redirects.index import PathIndex, PathRule
from starlette_mw._redirects.rules import (
    GONE,
    HOST,
    LONE_PERCENT,
    PATH_SAFE,
    Redirect,
    Status,
    check_host,
    check_status,
    query_params,
    query_parts,
    safe_query,
    valid_port,
)

# A relative Location the client will keep on this host: one '/', then anything printable but '/' or '\'.
SAFE_RELATIVE = re.compile(r"/(?:[!-.0-\[\]-~][!-~]*)?")


@dataclass(frozen=True, slots=True)
class OriginRule:
    """A checked host or scheme rule: where it sends requests, on which port, with which statuses."""

    index: int
    target: str  # the new host name, or the new scheme
    port: str | None
    statuses: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer: a status and Location (None for 410), and whether only in place of a 404."""

    status: int
    location: str | None
    if_not_found: bool = False
    check_route: bool = False
    rule: int = -1  # the rule's index; -1 for the trailing-slash policy
    via_slash: bool = False  # the rule matched the path with its trailing slash added or stripped


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
        self.host_rules: dict[str, OriginRule] = {}
        self.scheme_rules: dict[str, OriginRule] = {}
        # The port a scheme rule's port= gives its target scheme, by that scheme.
        self.scheme_ports: dict[str, str | None] = {}
        self.hosts = {check_host(host, "hosts=") for host in hosts}
        for host in sorted(self.hosts):
            if host_parts(host)[1] is not None:
                # The port comes from the request, or from a scheme rule's port=: a host with a port
                # here would never equal the name a request is compared by.
                raise ValueError(
                    f"hosts= holds {host!r}; list host names without a port, as in hosts=[{host_parts(host)[0]!r}] "
                    "(the port comes from the request, or from a scheme rule's port=)."
                )
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
            index = min(entry.index for entry in self.scheme_rules.values())
            raise ValueError(
                f"Redirect rule {index}: a scheme rule builds an absolute Location, and the host in it must be one "
                "the site is configured for, never the request's Host header; pass hosts=['example.com'] to "
                "RedirectMiddleware."
            )
        self.index = PathIndex(self.path_rules)
        self.has_origin_rules = bool(self.host_rules or self.scheme_rules)
        # Exact paths only (no host, scheme, pattern or trailing-slash rule): no path outside the
        # index's dictionary gets an answer, which `may_answer` tells at once.
        self._exact_only = not self.has_origin_rules and self.trailing_slash is None and not self.index.has_trie

    def may_answer(self, path: str) -> bool:
        """False when no rule can answer a request for `path` (as the routes see it); True when `decide` must tell.

        The requests that pass, most of them, cost a dictionary look-up. (A final newline is
        looked up without it, as `PathIndex.find` does.)
        """
        return not self._exact_only or path in self.index.exact or path[-1:] == "\n"

    def _add_origin_rule(self, index: int, rule: Redirect, default: tuple[int, int]) -> None:
        where = f"Redirect rule {index}"
        statuses = default if rule.status is None else check_status(rule.status, where, gone_allowed=False)
        # These would be ignored: a host or scheme rule moves every request for its host or scheme.
        for option, value, unset in (
            ("methods", rule.methods, None),
            ("query", rule.query, "keep"),
            ("if_not_found", rule.if_not_found, False),
        ):
            if value != unset:
                raise ValueError(
                    f"{where}: {option}={value!r} does not apply to a {rule.kind} rule, which redirects every request "
                    f"for its {rule.kind}; drop it, or use a path rule with an absolute target."
                )
        if rule.port is not None and (
            rule.kind != "scheme" or isinstance(rule.port, bool) or not isinstance(rule.port, int)
        ):
            raise ValueError(f"{where}: port={rule.port!r} is for scheme rules only, and must be a whole number.")
        if rule.port is not None and not 0 < rule.port < 65536:
            raise ValueError(f"{where}: port={rule.port!r} is not a TCP port; use one from 1 to 65535.")
        if rule.kind == "host":
            source, target = check_host(rule.source, where), check_host(rule.target, where)
            if host_parts(source)[1] is not None:
                raise ValueError(f"{where}: host rule source {source!r} has a port; match on the name alone.")
            name, port = host_parts(target)
            if name == source:
                raise ValueError(f"{where}: host rule {source!r} -> {target!r} redirects a host to itself.")
            if source in self.host_rules:
                raise ValueError(f"{where}: host {source!r} already has rule {self.host_rules[source].index}.")
            self.host_rules[source] = OriginRule(index, name, port, statuses)
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
                raise ValueError(f"{where}: scheme {source!r} already has rule {self.scheme_rules[source].index}.")
            port = None if rule.port is None else str(rule.port)  # a default port is dropped in origin()
            self.scheme_rules[source] = OriginRule(index, rule.target, port, statuses)
            self.scheme_ports[rule.target] = port

    def origin(self, scheme: str, host: str | None) -> tuple[int, str, tuple[int, int]] | None:
        """(first rule's index, new origin, statuses) when a host or scheme rule applies."""
        found = None if host is None else HOST.fullmatch(host.lower().removesuffix("."))
        if found is None:
            return None
        name, port = found.group("name", "port")
        if not valid_port(port):
            return None  # never copied into a Location; the request goes on unchanged
        index: int | None = None
        statuses = self.default
        host_rule = self.host_rules.get(name)
        if host_rule is not None:
            index, name, statuses = host_rule.index, host_rule.target, host_rule.statuses
        scheme_rule = self.scheme_rules.get(scheme) if name in self.hosts else None
        if scheme_rule is not None:
            if index is None or scheme_rule.index < index:
                index, statuses = scheme_rule.index, scheme_rule.statuses
            scheme, port = scheme_rule.target, None  # the request's port was the other scheme's
        if index is None:
            return None
        # The same port whichever scheme the request came on: a scheme rule's port= for its
        # scheme, else the host rule's port, else the request's if the scheme stays.
        port = self.scheme_ports.get(scheme) or (host_rule.port if host_rule is not None else None) or port
        if port is not None and port == DEFAULT_PORTS.get(scheme):
            port = None
        return index, f"{scheme}://{name}" + (f":{port}" if port else ""), statuses

    def decide(
        self,
        *,
        method: str,
        scheme: str,
        host: str | None,
        path: str,
        root_path: str,
        query_string: bytes,
        raw_path: bytes | None = None,
        slash: bool = True,
    ) -> Decision | None:
        """The answer to a request, or None to pass it on.

        `raw_path` is the scope's, for `root_path + path`: what is copied unchanged into a Location
        (the whole path for a host, scheme or trailing-slash redirect, a captured tail of the path)
        is copied from it as the client sent it, so '%2F' stays '%2F' and '%E9' stays '%E9'. That
        spelling is worked out only where a Location needs it, not for the requests that pass.
        """
        origin = self.origin(scheme, host) if self.has_origin_rules else None
        found = self.index.find(path, method, query_string)
        get = method in ("GET", "HEAD")
        if found is not None:
            rule, groups = found
            if rule.template is None:
                if origin is None:
                    return Decision(GONE, None, rule.if_not_found, rule=rule.index)
            elif origin is None or (not rule.if_not_found and not rule.template.origin):
                params = query_params(query_string) if rule.template.params else {}
                raw = _raw(root_path + path, raw_path)
                tails = _raw_tails(path, raw, groups) if raw is not None else None
                rendered = rule.template.render(groups, params, raw=tails)
                if rendered is not None:
                    location = self._location(
                        rendered, mode=rule.query, root_path=root_path, query_string=query_string, origin=origin
                    )
                    if location is not None:
                        return Decision(rule.statuses[0 if get else 1], location, rule.if_not_found, rule=rule.index)
        if origin is not None:
            index, new_origin, statuses = origin
            raw = _raw(root_path + path, raw_path)
            copied = raw if raw is not None else quote(root_path + path, safe=PATH_SAFE)
            location = new_origin + copied + _query("", query_string)
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
        raw_other = None
        raw = _raw(root_path + path, raw_path)
        if raw is not None:
            raw_other = (raw + "/" if self.trailing_slash == "append" else raw.rstrip("/") or "/").encode("ascii")
        ruled = self.decide(
            method=method,
            scheme=scheme,
            host=host,
            path=other,
            root_path=root_path,
            query_string=query_string,
            raw_path=raw_other,
            slash=False,
        )
        if ruled is not None and not ruled.if_not_found:
            return replace(ruled, via_slash=True)
        raw_copy = _raw(root_path + other, raw_other) if raw_other is not None else None
        location = (raw_copy or quote(root_path + other, safe=PATH_SAFE)) + _query("", query_string)
        if not SAFE_RELATIVE.fullmatch(location.partition("?")[0]):
            return None
        return Decision(self.default[0 if get else 1], location, check_route=True)

    def _location(
        self,
        rendered: str,
        *,
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
            # The request's parameters go through as sent (escapes, '+', no '=') unless the target
            # has one of the same name.
            ours = query_parts(target_query.encode("ascii"))
            names = {name for name, _ in ours}
            parts = [part for _, part in ours] + [
                safe_query(part) for name, part in query_parts(query_string) if name not in names
            ]
            query = "?" + "&".join(parts) if parts else ""
        if target_path.startswith("/"):
            target_path = quote(root_path, safe=PATH_SAFE) + target_path
            # Whatever the captured values held, the client must stay on this host.
            if not SAFE_RELATIVE.fullmatch(target_path):
                return None
            if origin is not None:
                return origin[1] + target_path + query
        return target_path + query


def _raw(path: str, raw_path: bytes | None) -> str | None:
    """`raw_path` made safe for a header (anything but printable ASCII and valid escapes
    percent-encoded), if it is how the client spelled `path`; None otherwise."""
    if not raw_path:
        return None
    raw = LONE_PERCENT.sub("%25", quote_from_bytes(raw_path, safe=PATH_SAFE + "%"))
    return raw if unquote(raw) == path else None


def _raw_tails(path: str, raw: str, groups: dict[str, str]) -> dict[str, str]:
    """For each captured value that is a tail of the path, that tail as `raw` spells it."""
    tails: dict[str, str] = {}
    starts: list[int] | None = None
    for name, value in groups.items():
        if not value or not path.endswith(value):
            continue
        if starts is None:  # where in `raw` each byte of the decoded path starts
            starts = []
            position = 0
            while position < len(raw):
                starts.append(position)
                position += 3 if raw[position] == "%" else 1
        size = len(value.encode("utf-8", "surrogateescape"))
        # A U+FFFD in the value may stand for one byte that was not UTF-8 ('%E9'): try that size too.
        for bytes_ in dict.fromkeys((size, size - 2 * value.count("\ufffd"))):
            tail = raw[starts[len(starts) - bytes_] :] if 0 < bytes_ <= len(starts) else None
            if tail is not None and unquote(tail) == value:
                tails[name] = tail
                break
    return tails


def host_parts(host: str) -> tuple[str, str | None]:
    """(name, port or None) of a host that `check_host` accepted."""
    found = HOST.fullmatch(host)
    return (found["name"], found["port"]) if found is not None else (host, None)


def _query(target_query: str, query_string: bytes) -> str:
    """The target's query, then the request's (made safe for a header), after a '?' if any."""
    request_query = safe_query(query_string.decode("latin-1")) if query_string else ""
    joined = "&".join(part for part in (target_query, request_query) if part)
    return "?" + joined if joined else ""
