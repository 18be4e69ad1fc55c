"""The loop check a `RedirectMiddleware` runs on its rules when it is built.

It follows redirects the way a client would, through the middleware's own decision code, from
every place a rule starts or ends: the sample path of each exact or Starlette-path source, the
target of each rule rendered with sample values, '/' on each configured host. It follows each
method some rule names, GET, and one method none names, changing the method as browsers do (a 303,
or a 301 or 302 after a POST, goes on as GET; the Fetch standard, "HTTP-redirect fetch"); it
starts with every query parameter some target requires and then carries the query each Location
holds, so a target that drops the parameter its rule needs ends the chain. The other conditions
count as met (the app answering 404, a trailing-slash target route existing), so what it reports
can happen. Each parameter is tried with a plain sample and an unlikely one ('x' and 'zq7', '1'
and '917'), so that an exact rule taking the plain one ('/p/x' before '/p/{x}') hides no loop.
What it cannot see: a regex source that matches only values other than the samples ('1' or '917'
for a group, 'x' for a query parameter), and redirects the app itself sends. In this run a
redirect back to the URL it came from counts as a loop: a rule that sends its own sample path to
itself (`Redirect("/a", "/a")`) is a mistake, refused although at request time it passes requests on.

Query parameters (issue 15). A second run follows redirects as they happen at request time, where
a Location that resolves to the request's own URL is not sent (see `urls.py`): Locations
are resolved as a browser resolves them ('.', '..' and '%2e' segments, escapes), and a redirect to
the request itself ends the chain, since the request then goes on to the app. It starts with no
query at all, and from each sample path of each rule that uses a query parameter with each of
`HOSTILE_VALUES` (empty, '/', '?', an escaped '&', '%', dot segments plain and escaped, '+'),
with each value that makes one of its target's paths a path of the rules (for '/{?to}' and a rule
for '/back', 'back') or that a rule's captured group would need to make its target one (a value
another rule's parameter may take and hand back: for '/x/{v}' -> '/{v}?to={v}', 'go' makes '/go'),
in every parameter at once and in each alone. It starts only from paths a
rule using a query parameter redirects, or from which the redirects lead there: other redirects do
not depend on the query, so a loop elsewhere shows in the first run.

What the two runs prove: with the runtime guard, no redirect sends a client to the URL it asked
for, whatever the query holds; and no rule set is accepted that loops, over several hops, for the
sample values and the values above. What they do not prove: that no other value of a query
parameter (one the client chooses) makes a loop of two or more hops, when it makes a target reach a
path that a Starlette-path or regex source matches for values other than the samples, or through
several parameters that need different values at once. A client is then sent round until it gives
up (browsers stop after 20 redirects); the middleware never spins, as each hop is one request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeAlias
from urllib.parse import quote, urlsplit

from starlette_mw._redirects.index import PathRule
from starlette_mw._redirects.table import Decision, RuleTable
from starlette_mw._redirects.urls import next_method, repeats, resolved_path

MAX_HOPS = 10
# What a target's groups are filled with: a plain value, and one no exact rule is likely to take.
GROUP_SAMPLES = ("1", "917")
# Query parameter values as a client may send them, chosen to break a target: empty, slashes,
# '?', an escaped '&', lone and escaped '%', dot segments plain and escaped, '+' (a space).
HOSTILE_VALUES = (
    "", "x", "/", "//", "?", "x?y", "%26", "%", "%25", ".", "..", "%2e", "%2E%2e",
    "./", "../", "/..", "x/..", "x/%2e%2e", "%2F", "+", "%2B",
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Stands for a parameter's value while the loop check works out which value gives a wanted path.
_MARKER = "zqmarkerqz"
# Characters a value keeps as sent in a query string; '&', '+', '#' and '%' itself are escaped.
_QUERY_VALUE_SAFE = "/:@!$'()*,;=?"
# (scheme, host, path, method, query string)
State: TypeAlias = tuple[str, str, str, str, bytes]


def check_loops(table: RuleTable) -> None:
    """Raise ValueError, naming the first rule involved, if the rules can redirect a client in a loop."""
    starts: set[str] = set()
    named: set[str] = set()
    required: set[str] = set()
    for rule in table.path_rules:
        named |= rule.methods or set()
        required |= rule.required
        starts.update(rule.samples)
        if rule.template is not None:
            for value in GROUP_SAMPLES:
                rendered = rule.template.render(dict.fromkeys(rule.template.groups, value), {}, sample=True) or ""
                starts.add(resolved_path(urlsplit(rendered).path))
    if table.has_origin_rules:
        starts.add("/")
    methods = sorted(named | {"GET", next(m for m in ("POST", "X-UNNAMED") if m not in named)})
    query = _query(dict.fromkeys(sorted(required), "x"))
    # A host rule sends every request for its host elsewhere at once, so a loop through such a host
    # shows from '/' (host rules form a cycle) or from the host it leads to; the paths start there.
    hosts = sorted(table.hosts - table.host_rules.keys()) or ["localhost"]
    schemes = ("http", "https") if table.has_origin_rules else ("http",)
    ends: set[State] = set()  # states from which the redirects are known to stop
    steps: list[tuple[str, int, str]] = []  # (path, rule, next path) of each redirect followed
    for method in methods:
        for host in sorted(table.host_rules):
            for scheme in schemes:
                _follow(table, (scheme, host, "/", method, query), ends, steps)
        for path in sorted(starts):
            if path.startswith("/"):
                for host in hosts:
                    for scheme in schemes:
                        _follow(table, (scheme, host, path, method, query), ends, steps)
    # Then as at request time, where a redirect to the request's own URL is not sent, with the
    # query parameter values that could make a loop (see the module docstring).
    users = [rule for rule in table.path_rules if rule.template is not None and rule.template.params]
    if not users:
        return  # no value of the query reaches a Location: the run above covered every path
    leading = _leading_to({rule.index for rule in users}, steps)
    handed_back = _solutions(table.path_rules, leading, groups=True)
    values = sorted(set(HOSTILE_VALUES) | _solutions(users, leading) | handed_back)
    hostile = [(path, b"") for path in sorted(leading)]
    for rule in users:
        params = sorted(rule.template.params) if rule.template is not None else []
        base = dict.fromkeys(sorted(required), "x")
        for value in values:
            queries = [_query({**base, name: value}) for name in params]
            queries.append(_query({**base, **dict.fromkeys(params, value)}))
            hostile += [(path, each) for path in rule.samples for each in dict.fromkeys(queries)]
    guarded: set[State] = set()
    for method in methods:
        for path, each in hostile:
            if path.startswith("/"):
                for host in hosts:
                    for scheme in schemes:
                        _follow(table, (scheme, host, path, method, each), guarded, guard=True)


def _leading_to(users: set[int], steps: list[tuple[str, int, str]]) -> set[str]:
    """The paths where a rule in `users` redirects, and those from which redirects lead there.

    A loop whose course a query value changes passes through a rule that puts a value in its target
    or needs a parameter, and redirects of other rules do not depend on the query: only these paths
    can be on such a loop."""
    before: dict[str, set[str]] = {}
    found: set[str] = set()
    for path, rule, after in steps:
        before.setdefault(after, set()).add(path)
        if rule in users:
            found.add(path)
    todo = list(found)
    while todo:
        for path in before.get(todo.pop(), ()):
            if path not in found:
                found.add(path)
                todo.append(path)
    return found


def _query(params: dict[str, str]) -> bytes:
    return "&".join(f"{quote(name, safe='')}={value}" for name, value in params.items()).encode("ascii")


def _solutions(rules: Iterable[PathRule], paths: Iterable[str], *, groups: bool = False) -> set[str]:
    """Values of a query parameter that make a target's path one of `paths` (the rules' sources and
    targets), each as a client would send it: for '/{?to}' and '/go', 'go'. With `groups`, values
    of a captured group instead, which a query value may have reached through a path: for
    '/x/{v}' -> '/{v}?to={v}' and '/go', 'go' (so '/go' -> '/x/{?to}' is tried with to=go)."""
    wanted = sorted(paths)
    found: set[str] = set()
    for rule in rules:
        template = rule.template
        if template is None:
            continue
        for name in sorted(template.groups if groups else template.params):
            captured = dict.fromkeys(template.groups, GROUP_SAMPLES[0])
            params = dict.fromkeys(template.params, "x")
            if groups:
                captured[name] = _MARKER
            else:
                params[name] = _MARKER
            rendered = template.render(captured, params) or ""
            path = resolved_path(urlsplit(rendered).path)
            before, marker, after = path.partition(_MARKER)
            if not marker:
                continue  # the value goes into the query only
            for other in wanted:
                if other.startswith(before) and other.endswith(after) and len(other) >= len(before) + len(after):
                    found.add(quote(other[len(before) : len(other) - len(after)], safe=_QUERY_VALUE_SAFE))
    return found


def _follow(
    table: RuleTable,
    state: State,
    ends: set[State],
    steps: list[tuple[str, int, str]] | None = None,
    *,
    guard: bool = False,
) -> None:
    """Follow redirects from `state`; with `guard`, a redirect to the request's own URL ends the
    chain, as it does at request time (without, it is a rule that sends a URL to itself: a mistake)."""
    seen = [state]
    hops: list[Decision] = []
    while True:
        scheme, host, path, method, query = state
        decision = (
            None
            if state in ends
            else table.decide(method=method, scheme=scheme, host=host, path=path, root_path="", query_string=query)
        )
        if (
            decision is None
            or decision.location is None
            or (
                guard
                and repeats(
                    decision.location,
                    decision.status,
                    method=method,
                    scheme=scheme,
                    host=host,
                    path=path,
                    raw_path=None,
                    query_string=query,
                )
            )
        ):
            ends.update(seen)
            return
        method = next_method(method, decision.status)
        url = urlsplit(decision.location)
        if url.netloc:
            if url.hostname not in table.hosts:
                ends.update(seen)
                return  # another site's business
            scheme, host = url.scheme, url.netloc
        state = (scheme, host, resolved_path(url.path), method, url.query.encode("ascii"))
        if steps is not None:
            steps.append((path, decision.rule, state[2]))
        hops.append(decision)
        if state in seen or len(hops) > MAX_HOPS:
            raise ValueError(_message(table, [*seen, state], hops, looped=state in seen, queries=guard))
        seen.append(state)


def _message(table: RuleTable, states: list[State], hops: list[Decision], *, looped: bool, queries: bool) -> str:
    def show(state: State) -> str:
        # A control character (a final newline a source now matches) shown as the client sends it.
        path = _CONTROL.sub(lambda char: f"%{ord(char[0]):02X}", state[2])
        where = f"{state[0]}://{state[1]}{path}" if table.has_origin_rules else path
        if queries and state[4]:
            where += "?" + state[4].decode("ascii")
        return where if state[3] == "GET" else f"{state[3]} {where}"

    chain = show(states[0])
    for state, decision in zip(states[1:], hops, strict=True):
        by = f"rule {decision.rule}" if decision.rule >= 0 else f"trailing_slash={table.trailing_slash!r}"
        if decision.via_slash:
            by = f"trailing_slash={table.trailing_slash!r}, then rule {decision.rule}"
        chain += f" -> ({by}) {show(state)}"
    first = next((decision.rule for decision in hops if decision.rule >= 0), 0)
    what = "redirect in a loop" if looped else f"keep redirecting (more than {MAX_HOPS} hops)"
    return f"Redirect rule {first}: the rules {what}: {chain}; change a target, or remove a rule."
