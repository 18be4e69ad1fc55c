r"""`check_origin_regex`: decides whether an `allow_origin_regex` lets other sites in.

The guarantee. Starlette's CORSMiddleware allows an origin when the pattern fullmatches it. Take
every origin a browser can send (`scheme "://" host [":" port]`, lower case) that the pattern
fullmatches; the site of each is its host's registrable domain by the Public Suffix List (the
public suffix, by the list's longest rule with wildcards and exceptions, plus one label), or the
whole host where there is none (an IP address, `localhost`, a public suffix itself), with the
host's trailing '.' if it has one. The pattern is accepted only if the sites of all of them are
among finitely many that the pattern spells out literally: some match reads every character of
the site through a literal part of the pattern (a character, or a class or '.' that allows only
one character an origin can hold there, as `(?i)A` allows only 'a'). Subdomain labels, the scheme
and the port may vary freely. `null` is refused apart (any sandboxed page sends it).

The decision is made on the pattern, not by trying strings: `_origin_automaton` turns it into an
automaton crossed with the grammar of an origin, and the walk below reads the hosts it can match
backwards, from their right end, label by label, keeping the set of states each suffix leads from
(and the set reached through literal parts only). It stops where the list settles the registrable
domain, at the host's start when there is none, and refuses where a class, '.' or a repeat stands
inside that part, naming one origin of another site that the pattern matches, built from the
automaton. Where the list has longer rules below a domain (hosting platforms such as
`*.compute.amazonaws.com`), the labels down to where it settles must be literal too, so a wildcard
directly below such a domain is refused. Lookarounds, backreferences, conditionals, atomic groups,
possessive repeats and `\b`/`\B` are refused as undecidable here.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from starlette_mw._cors.origin_automaton import (
    HOST_START,
    LABEL_START,
    Automaton,
    State,
    Undecidable,
    build,
    is_anchored,
)
from starlette_mw._cors.sites import sites
from starlette_mw._http import is_origin

__all__ = ["check_origin_regex", "site_of", "subdomains_pattern"]

_MAX_STEPS = 200_000  # suffixes walked; more means a pattern better written as a list
_MAX_HOST = 260  # a host name has at most 253 characters
_LABEL_CHARS = string.ascii_lowercase + string.digits + "-"
_IPV6_CHARS = "0123456789abcdef:.["
_STARTS = (HOST_START, LABEL_START)
_FIX = (
    "list the origins in allow_origins, or for the subdomains of one site use allow_origins="
    r"['https://*.example.com'] or allow_origin_regex=r'^https://[a-z0-9-]+\.example\.com$'"
)


def site_of(host: str) -> str:
    """The site of a host as an origin holds it: its registrable domain, or the whole host if it has none."""
    name = host.removesuffix(".")
    if name.startswith("[") or name.rpartition(".")[2].isdigit():
        return host
    registrable = sites().registrable(name)
    return host if registrable is None else registrable + host[len(name) :]


@dataclass(frozen=True)
class _Candidate:
    """Hosts the pattern matches through `states` then `tail`, whose site is `site`; `kind` says why it is one."""

    states: frozenset[State]
    tail: str
    site: str | None
    kind: str


class _Found(Exception):
    def __init__(self, candidate: _Candidate) -> None:
        self.candidate = candidate


class _Walk:
    """The hosts of an automaton, read from their right end, with the sites they belong to.

    `every` is the set of states from which the suffix read so far leads to the host's end,
    `literal` the same through literal parts only; `anchor` says whether the labels read so far,
    where they are a registrable domain that the list may still extend, were read literally.
    """

    def __init__(self, automaton: Automaton) -> None:
        self.automaton = automaton
        self.literal_sites: set[str] = set()
        self.unspelled: list[_Candidate] = []
        self.steps = 0

    def run(self) -> _Candidate | None:
        """A candidate for an origin of a site the pattern does not spell out, or None if there is none."""
        ends = self.automaton.host_ends()
        try:
            for char in (*_LABEL_CHARS, ".", "]"):
                self._step(ends, ends, "", "", (), char, dot=False, anchor=False, path=frozenset())
        except _Found as found:
            return found.candidate
        return next((c for c in self.unspelled if c.site not in self.literal_sites), None)

    def _record(self, site: str, literal: bool, states: frozenset[State], tail: str) -> None:
        if literal:
            self.literal_sites.add(site)
        else:
            self.unspelled.append(_Candidate(states, tail, site, "site"))

    def _step(
        self,
        every: frozenset[State],
        literal: frozenset[State],
        tail: str,
        partial: str,
        labels: tuple[str, ...],
        char: str,
        *,
        dot: bool,
        anchor: bool,
        path: frozenset[object],
    ) -> None:
        """Read `char` leftwards, in front of `tail` (the host's end; `partial`, the label being read)."""
        automaton = self.automaton
        before = automaton.back(every, char, literal=False)
        if not before:
            return
        self.steps += 1
        if self.steps > _MAX_STEPS or len(tail) >= _MAX_HOST:
            raise Undecidable("more hosts than can be walked (or a host longer than 253 characters)")
        through = automaton.back(literal, char, literal=True)
        tail = char + tail
        if char == "." or (char == "]" and not tail[1:]):
            if tail == "]":
                self._ipv6(before, through, tail, path)
                return
            dot = dot or tail == "."  # the root's '.' at the host's very end
            for nxt in _LABEL_CHARS:
                self._step(before, through, tail, "", labels, nxt, dot=dot, anchor=anchor, path=path)
            return
        partial = char + partial
        if self._is_site(labels):
            if not through:  # a class, '.' or the like reads this character of the site
                raise _Found(_Candidate(before, tail, None, "class"))
            key = (before, through, "ip" if _numeric(labels) else labels)
            if key in path:  # the same states again within this label: a repeat inside the site's name
                raise _Found(_Candidate(before, tail, None, "repeat"))
            path = path | {key}
        elif not any(label.endswith(partial) for label in sites().longer_rules(labels)):
            # No rule of the list goes on with this label: the site is settled below it.
            self._record(f"{sites().registrable('.'.join(labels))}{'.' if dot else ''}", anchor, before, tail)
            return
        self._boundary(before, through, tail, (partial, *labels), dot=dot, anchor=anchor, path=path)
        for nxt in _LABEL_CHARS:
            self._step(before, through, tail, partial, labels, nxt, dot=dot, anchor=anchor, path=path)

    @staticmethod
    def _is_site(labels: tuple[str, ...]) -> bool:
        """Whether the label left of `labels` is surely part of the site (else the list may settle below it)."""
        if not labels or _numeric(labels):
            return True
        return sites().registrable(".".join(labels)) is None or "*" in sites().longer_rules(labels)

    def _boundary(
        self,
        every: frozenset[State],
        literal: frozenset[State],
        tail: str,
        labels: tuple[str, ...],
        *,
        dot: bool,
        anchor: bool,
        path: frozenset[object],
    ) -> None:
        """Where the label just read may be the host's first, or follow a '.'."""
        kinds = {state[1] for state in every}
        if not kinds.intersection(_STARTS):
            return
        suffix = "." if dot else ""
        name = ".".join(labels)
        registrable = None if _numeric(labels) else sites().registrable(name)
        longer = frozenset() if _numeric(labels) else sites().longer_rules(labels)
        spelled = {state[1] for state in literal}
        starts = frozenset(state for state in every if state[1] in _STARTS)
        if registrable is not None and not longer:  # settled: every host ending here has this site
            literal_here = bool(spelled.intersection(_STARTS)) if registrable == name else anchor
            self._record(registrable + suffix, literal_here, starts, tail)
            return
        if HOST_START in kinds:  # the whole host
            literal_here = HOST_START in spelled if registrable in (None, name) else anchor
            self._record((registrable or name) + suffix, literal_here, starts, tail)
        if LABEL_START in kinds:
            if registrable == name:  # a registrable domain the list may extend: was it spelled out?
                anchor = LABEL_START in spelled
            self._step(every, literal, tail, "", labels, ".", dot=dot, anchor=anchor, path=path)

    def _ipv6(self, every: frozenset[State], literal: frozenset[State], tail: str, path: frozenset[object]) -> None:
        """An IPv6 address is its own site: every character of it must be literal."""
        if not literal:
            raise _Found(_Candidate(every, tail, None, "class"))
        key = (every, literal, "ipv6")
        if key in path:
            raise _Found(_Candidate(every, tail, None, "repeat"))
        if tail.startswith("["):
            if any(state[1] == HOST_START for state in every):
                self._record(tail, any(state[1] == HOST_START for state in literal), every, tail)
            return
        for char in _IPV6_CHARS:
            before = self.automaton.back(every, char, literal=False)
            if before:
                self._ipv6(before, self.automaton.back(literal, char, literal=True), char + tail, path | {key})


def _numeric(labels: tuple[str, ...]) -> bool:
    """Whether a host ending in `labels` is an IPv4 address (the URL standard: its last label is a number)."""
    return bool(labels) and labels[-1].isdigit()


def _witness(automaton: Automaton, regex: re.Pattern[str], candidate: _Candidate) -> str | None:
    """An origin the pattern matches, made of a word to one of the candidate's states and its tail."""
    found = None
    for state in sorted(candidate.states, key=lambda state: (len(automaton.word[state]), automaton.word[state])):
        origin = automaton.complete(state, candidate.tail)
        if origin is not None and regex.fullmatch(origin):
            if is_origin(origin):
                return origin
            found = found or origin
    return found


def check_origin_regex(pattern: str, regex: re.Pattern[str]) -> None:
    """A ValueError naming an origin of another site that `regex` allows, and the fix, if there is one."""
    anchored, alternation = is_anchored(pattern)
    # Starlette matches the whole origin, but the same pattern in a proxy's or another framework's
    # configuration is searched; a pattern that says where it starts and ends is safe in both.
    if not anchored:
        body = pattern.removeprefix("^")
        body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
        fixed = f"^(?:{body})$" if alternation else f"^{body}$"
        raise ValueError(
            f"allow_origin_regex={pattern!r} is not anchored; start it with '^' and end it with '$', "
            f"as in {fixed!r}, so that it cannot match inside a longer origin."
        )
    if regex.fullmatch("null"):
        raise ValueError(
            f"allow_origin_regex={pattern!r} matches 'null', which any page can send (from a sandboxed iframe, "
            "say), so it would allow every site; leave 'null' out."
        )
    try:
        automaton = build(pattern)
        candidate = _Walk(automaton).run() if automaton.accepting else None
    except Undecidable as error:
        raise ValueError(
            f"allow_origin_regex={pattern!r} uses {error}, so which sites it lets in cannot be decided; write it "
            r"with literal text, classes such as [a-z0-9-]+, groups with '|', '?' and '+', as in "
            rf"r'^https://(app|admin)\.example\.com$', or {_FIX}."
        ) from None
    if not automaton.accepting:
        raise ValueError(
            f"allow_origin_regex={pattern!r} matches no origin a browser sends (scheme://host[:port] in lower case, "
            "host parts of letters, digits and '-', no path or trailing slash); write the origins as browsers "
            r"send them, as in r'^https://(app|admin)\.example\.com(:[0-9]+)?$'."
        )
    if candidate is None:
        return
    witness = _witness(automaton, regex, candidate)
    if witness is None:  # (the automaton and `re` disagree: refuse rather than guess)
        raise ValueError(f"allow_origin_regex={pattern!r} could not be checked; {_FIX}.")
    host = witness.partition("://")[2]
    host = host[: host.rindex(":")] if host.rfind(":") > host.rfind("]") else host
    why = {
        "class": "a class, '.' or the like stands where the name of the site is",
        "repeat": "a repeat stands where the name of the site is",
        "site": "no match spells that site out letter by letter",
    }[candidate.kind]
    raise ValueError(
        f"allow_origin_regex={pattern!r} matches {witness!r}, an origin of the site {site_of(host)!r} ({why}); "
        "every origin the pattern matches must belong to a registrable domain written out in it, with only "
        f"subdomains, scheme and port left open; {_FIX}."
    )


def subdomains_pattern(origin: str) -> str | None:
    """For 'scheme://*.domain[:port]', the regex of its origins (one or more labels before the domain)."""
    scheme, sep, rest = origin.partition("://*.")
    if not sep or "*" in rest:
        return None
    label = "[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    return f"^{re.escape(scheme)}://(?:{label}\\.)+{re.escape(rest)}$"
