r"""The origins a regular expression fullmatches, as an automaton: the pattern's own, crossed with
the grammar of an origin as browsers send it.

The pattern is read with the re module's own parser (`re._parser`, private but the same from
3.11 on), so nothing here re-reads regex syntax; what one character class, literal or '.' matches
is asked of the re module's compiler for that one node, under the pattern's flags, for each
character an origin can hold, so case-insensitivity, `\d`, `\w` and negated classes mean exactly
what they mean to `re`. This is the only module that touches `re._parser` and `re._compiler`.

The automaton is a Thompson NFA, so it has as many states as the pattern has parts (a counted
repeat is written out); it is crossed with the grammar `scheme "://" host [":" port]` in lower
case, and trimmed to the states that lie on the way to a match.
"""

from __future__ import annotations

import importlib
import string
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HOST_START", "LABEL_START", "Automaton", "Undecidable", "build", "is_anchored"]

_sre: Any = importlib.import_module("re._parser")
_compiler: Any = importlib.import_module("re._compiler")

_MAX_STATES = 6000  # more parts than this: a pattern better written as a list of origins
_MAX_COUNT = 255  # a host name has at most 253 characters
# Steps of `fullmatches` remembered (a lazily built DFA): enough for every origin of a site, bounded
# so that a client sending new origins cannot grow it without end.
_MAX_STEPS_KEPT = 4096


class Undecidable(Exception):
    """A construct whose matches an automaton cannot hold; the argument names it."""


_UNSUPPORTED = {
    _sre.ASSERT: "a lookahead or lookbehind",
    _sre.ASSERT_NOT: "a lookahead or lookbehind",
    _sre.GROUPREF: "a backreference",
    _sre.GROUPREF_EXISTS: "a conditional group",
    _sre.ATOMIC_GROUP: "an atomic group",
    _sre.POSSESSIVE_REPEAT: "a possessive repeat",
}
_BEGINNINGS = (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING)
_ENDS = (_sre.AT_END, _sre.AT_END_STRING)

# -- the grammar of an origin: scheme "://" host [":" port], lower case (RFC 6454 section 6.2) ------
SCHEME_FIRST, SCHEME, COLON, SLASH = "scheme-first", "scheme", "colon", "slash"
HOST_START, LABEL, HYPHEN, LABEL_START, IPV6, IPV6_END = "host", "label", "hyphen", "label-start", "ipv6", "ipv6-end"
PORT_FIRST, PORT = "port-first", "port"
_ALNUM = string.ascii_lowercase + string.digits
_GRAMMAR: dict[str, dict[str, str]] = {
    SCHEME_FIRST: dict.fromkeys(string.ascii_lowercase, SCHEME),
    SCHEME: {**dict.fromkeys(_ALNUM + "+.-", SCHEME), ":": COLON},
    COLON: {"/": SLASH},
    SLASH: {"/": HOST_START},
    HOST_START: {**dict.fromkeys(_ALNUM, LABEL), "[": IPV6},
    # A label has letters, digits and '-', not at either end (RFC 1123); a host may end in the root's '.'.
    LABEL: {**dict.fromkeys(_ALNUM, LABEL), "-": HYPHEN, ".": LABEL_START, ":": PORT_FIRST},
    HYPHEN: {**dict.fromkeys(_ALNUM, LABEL), "-": HYPHEN},
    LABEL_START: {**dict.fromkeys(_ALNUM, LABEL), ":": PORT_FIRST},
    IPV6: {**dict.fromkeys("0123456789abcdef:.", IPV6), "]": IPV6_END},
    IPV6_END: {":": PORT_FIRST},
    PORT_FIRST: dict.fromkeys("123456789", PORT),
    PORT: dict.fromkeys(string.digits, PORT),
}
_ACCEPTING = frozenset({LABEL, LABEL_START, IPV6_END, PORT})
HOST_ENDS = frozenset({LABEL, LABEL_START, IPV6_END})
ALPHABET = "".join(sorted({char for moves in _GRAMMAR.values() for char in moves}))


@dataclass
class _NFA:
    """States are numbers; an empty move may be taken only at the start ('^') or end ('$')."""

    empty: list[list[tuple[int, str | None]]] = field(default_factory=list)
    moves: list[list[tuple[frozenset[str], int]]] = field(default_factory=list)

    def state(self) -> int:
        if len(self.empty) >= _MAX_STATES:
            raise Undecidable(f"more than {_MAX_STATES} parts once its repeats are written out")
        self.empty.append([])
        self.moves.append([])
        return len(self.empty) - 1


def _characters(node: tuple[Any, Any], flags: int) -> frozenset[str]:
    """The characters of `ALPHABET` that one literal, class or '.' matches, as `re` decides it."""
    regex = _compiler.compile(_sre.SubPattern(_sre.State(), [node]), flags)
    return frozenset(char for char in ALPHABET if regex.fullmatch(char))


def _fragment(nfa: _NFA, items: Iterable[tuple[Any, Any]], flags: int) -> tuple[int, int]:
    start = end = nfa.state()
    for op, value in items:
        first, last = _node(nfa, op, value, flags)
        nfa.empty[end].append((first, None))
        end = last
    return start, end


def _node(nfa: _NFA, op: Any, value: Any, flags: int) -> tuple[int, int]:
    if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
        start, end = nfa.state(), nfa.state()
        nfa.moves[start].append((_characters((op, value), flags), end))
        return start, end
    if op is _sre.AT:
        start, end = nfa.state(), nfa.state()
        if value in _BEGINNINGS:
            nfa.empty[start].append((end, "^"))
        elif value in _ENDS:
            nfa.empty[start].append((end, "$"))
        else:
            raise Undecidable(r"'\b' or '\B'")
        return start, end
    if op is _sre.BRANCH:
        start, end = nfa.state(), nfa.state()
        for branch in value[1]:
            first, last = _fragment(nfa, branch, flags)
            nfa.empty[start].append((first, None))
            nfa.empty[last].append((end, None))
        return start, end
    if op is _sre.SUBPATTERN:
        _, add, remove, items = value
        return _fragment(nfa, items, (flags | add) & ~remove)
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):  # greedy or lazy: the same strings match
        least, most, body = value
        if least > _MAX_COUNT or (most != _sre.MAXREPEAT and most > _MAX_COUNT):
            raise Undecidable(f"a repeat count over {_MAX_COUNT}")
        start = end = nfa.state()
        for _ in range(least):
            first, last = _fragment(nfa, body, flags)
            nfa.empty[end].append((first, None))
            end = last
        if most == _sre.MAXREPEAT:
            first, last = _fragment(nfa, body, flags)
            nfa.empty[end].append((first, None))
            nfa.empty[last].append((end, None))
        else:
            exits = [end]
            for _ in range(most - least):
                first, last = _fragment(nfa, body, flags)
                nfa.empty[end].append((first, None))
                end = last
                exits.append(end)
            end = nfa.state()
            for exit_ in exits:
                nfa.empty[exit_].append((end, None))
        return start, end
    raise Undecidable(_UNSUPPORTED.get(op, str(op)))


# A state of the crossed automaton: (pattern state, grammar state, whether a '$' has been passed).
State = tuple[int, str, bool]


class Automaton:
    """The origins a pattern fullmatches: moves forward and backward, and words that reach a state."""

    def __init__(self, pattern: str) -> None:
        parsed = _sre.parse(pattern)
        nfa = _NFA()
        begin, final = _fragment(nfa, parsed, parsed.state.flags)
        self.start: State = (begin, SCHEME_FIRST, False)
        # Forward: every state reachable from the start, with one shortest word to it.
        self.empty: dict[State, list[State]] = {}
        self.moves: dict[State, list[tuple[str, State, bool]]] = {}
        self.word: dict[State, str] = {self.start: ""}
        queue = deque([self.start])
        while queue:
            state = queue.popleft()
            at, grammar, ended = state
            empty: list[State] = []
            for target, anchor in nfa.empty[at]:
                if anchor == "^" and grammar != SCHEME_FIRST:
                    continue
                if anchor == "$" and grammar not in _ACCEPTING:
                    continue
                empty.append((target, grammar, ended or anchor == "$"))
            moves: list[tuple[str, State, bool]] = []
            if not ended:
                for characters, target in nfa.moves[at]:
                    allowed = [char for char in sorted(characters) if char in _GRAMMAR[grammar]]
                    # "Literal": one character is all an origin can hold here, as in 'a' or '(?i)A'.
                    moves.extend(
                        (char, (target, _GRAMMAR[grammar][char], False), len(allowed) == 1) for char in allowed
                    )
            self.empty[state], self.moves[state] = empty, moves
            for nxt, word in [
                *((s, self.word[state]) for s in empty),
                *((s, self.word[state] + c) for c, s, _ in moves),
            ]:
                if nxt not in self.word:
                    self.word[nxt] = word
                    queue.append(nxt)
        self.accepting = {state for state in self.word if state[0] == final and state[1] in _ACCEPTING}
        # Backward, within the states that lie on the way to a match.
        self.back_empty: dict[State, list[State]] = {}
        self.back_moves: dict[State, list[tuple[str, State, bool]]] = {}
        for state in self.word:
            for after in self.empty[state]:
                self.back_empty.setdefault(after, []).append(state)
            for char, after, literal in self.moves[state]:
                self.back_moves.setdefault(after, []).append((char, state, literal))
        self.live = self._backward_closure(self.accepting, literal=False, moves=True)
        self._first = frozenset(self._forward({self.start})) if self.start in self.live else frozenset()
        self._steps: dict[tuple[frozenset[State], str], frozenset[State]] = {}

    def fullmatches(self, origin: str) -> bool:
        """Whether the pattern fullmatches `origin`, a string of the origin grammar (anything else: False).

        In one pass over `origin`, carrying the set of states it may be in: no backtracking, so no
        pattern such as '(a+)+' makes a client's Origin cost more than its length (`re` would take
        time exponential in it, with the event loop blocked meanwhile).
        """
        current = self._first
        for char in origin:
            key = (current, char)
            after = self._steps.get(key)
            if after is None:
                reached = {s for at in current for c, s, _ in self.moves[at] if c == char and s in self.live}
                after = frozenset(self._forward(reached))
                if len(self._steps) < _MAX_STEPS_KEPT:
                    self._steps[key] = after
            if not after:
                return False
            current = after
        return not self.accepting.isdisjoint(current)

    def _backward_closure(self, states: Iterable[State], *, literal: bool, moves: bool) -> set[State]:
        seen = set(states)
        queue = deque(seen)
        while queue:
            state = queue.popleft()
            for before in self.back_empty.get(state, ()):
                if before not in seen:
                    seen.add(before)
                    queue.append(before)
            if moves:
                for _, before, is_literal in self.back_moves.get(state, ()):
                    if before not in seen and (is_literal or not literal):
                        seen.add(before)
                        queue.append(before)
        return seen

    def host_ends(self) -> frozenset[State]:
        """The live states where a host can end: at the end of the origin, or before its ':port'."""
        ends = {
            state
            for state in self.live
            if state[1] in HOST_ENDS
            and (state in self.accepting or any(c == ":" and s in self.live for c, s, _ in self.moves[state]))
        }
        return frozenset(self.back(ends, "", literal=False))

    def back(self, states: Iterable[State], char: str, *, literal: bool) -> frozenset[State]:
        """The live states from which reading `char` (none if empty) leads into `states`; only through
        literal parts if `literal`."""
        if char:
            states = {
                before
                for state in states
                for c, before, is_literal in self.back_moves.get(state, ())
                if c == char and (is_literal or not literal) and before in self.live
            }
        return frozenset(s for s in self._backward_closure(states, literal=literal, moves=False) if s in self.live)

    def complete(self, state: State, host: str) -> str | None:
        """A whole origin the pattern matches: a word to `state`, then `host`, then a port or nothing."""
        current = self._forward({state})
        for char in host:
            current = self._forward({s for at in current for c, s, _ in self.moves[at] if c == char and s in self.live})
        # The host ends here: what follows may only be ':' and the port's digits.
        words = {s: "" for s in current if s[1] in HOST_ENDS}
        queue = deque(words)
        while queue:
            at = queue.popleft()
            if at in self.accepting:
                return self.word[state] + host + words[at]
            steps = [(s, "") for s in self.empty[at]]
            steps += [(s, c) for c, s, _ in self.moves[at] if s[1] in (PORT_FIRST, PORT)]
            for nxt, char in steps:
                if nxt in self.live and nxt not in words:
                    words[nxt] = words[at] + char
                    queue.append(nxt)
        return None

    def _forward(self, states: set[State]) -> set[State]:
        seen = set(states)
        queue = deque(seen)
        while queue:
            for nxt in self.empty[queue.popleft()]:
                if nxt not in seen and nxt in self.live:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen


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


def is_anchored(pattern: str) -> tuple[bool, bool]:
    """Whether every way through `pattern` starts with '^' (or '\\A'), and whether every way ends with '$'
    (or '\\Z'); and whether it is one alternation at its top."""
    items = list(_sre.parse(pattern))
    return _anchored(items, 0, _BEGINNINGS) and _anchored(items, -1, _ENDS), len(items) == 1 and items[0][
        0
    ] is _sre.BRANCH


def build(pattern: str) -> Automaton:
    """The automaton of the origins `pattern` fullmatches; Undecidable names what it cannot hold."""
    return Automaton(pattern)
