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
for a group, 'x' for a query parameter), and redirects the app itself sends.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import quote, unquote, urlsplit

from starlette_mw._redirect_table import Decision, RuleTable

MAX_HOPS = 10
# What a target's groups are filled with: a plain value, and one no exact rule is likely to take.
GROUP_SAMPLES = ("1", "917")
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
                starts.add(unquote(urlsplit(rendered).path))
    if table.has_origin_rules:
        starts.add("/")
    methods = sorted(named | {"GET", next(m for m in ("POST", "X-UNNAMED") if m not in named)})
    query = "&".join(f"{quote(name, safe='')}=x" for name in sorted(required)).encode("ascii")
    # A host rule sends every request for its host elsewhere at once, so a loop through such a host
    # shows from '/' (host rules form a cycle) or from the host it leads to; the paths start there.
    hosts = sorted(table.hosts - table.host_rules.keys()) or ["localhost"]
    schemes = ("http", "https") if table.has_origin_rules else ("http",)
    ends: set[State] = set()  # states from which the redirects are known to stop
    for method in methods:
        for host in sorted(table.host_rules):
            for scheme in schemes:
                _follow(table, (scheme, host, "/", method, query), ends)
        for path in sorted(starts):
            if path.startswith("/"):
                for host in hosts:
                    for scheme in schemes:
                        _follow(table, (scheme, host, path, method, query), ends)


def _follow(table: RuleTable, state: State, ends: set[State]) -> None:
    seen = [state]
    hops: list[Decision] = []
    while True:
        scheme, host, path, method, query = state
        decision = None if state in ends else table.decide(method, scheme, host, path, "", query)
        if decision is None or decision.location is None:
            ends.update(seen)
            return
        if decision.status == 303 and method not in ("GET", "HEAD"):
            method = "GET"
        elif decision.status in (301, 302) and method == "POST":
            method = "GET"
        url = urlsplit(decision.location)
        if url.netloc:
            if url.hostname not in table.hosts:
                ends.update(seen)
                return  # another site's business
            scheme, host = url.scheme, url.netloc
        state = (scheme, host, unquote(url.path), method, url.query.encode("ascii"))
        hops.append(decision)
        if state in seen or len(hops) > MAX_HOPS:
            raise ValueError(_message(table, [*seen, state], hops, looped=state in seen))
        seen.append(state)


def _message(table: RuleTable, states: list[State], hops: list[Decision], *, looped: bool) -> str:
    def show(state: State) -> str:
        where = f"{state[0]}://{state[1]}{state[2]}" if table.has_origin_rules else state[2]
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
