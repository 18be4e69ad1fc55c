"""Sites by the Public Suffix List: which part of a host name says whose it is.

The list comes from the `publicsuffixlist` package, which bundles a copy of it and reads it from
disk (no network); it is loaded once, at the first check that needs it. Its ICANN and private
sections both count, as they do for browsers' notion of a site (`github.io` and `co.uk` are
both suffixes under which anyone can register a name).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from publicsuffixlist import PSLFILE, PublicSuffixList

__all__ = ["Sites", "sites"]


class Sites:
    """The registrable domain of a host name, and what a walk from its right end needs to know."""

    def __init__(self) -> None:
        self._list = PublicSuffixList()
        # For each run of labels that ends a rule and is shorter than it, the labels the rule has
        # just to its left ('*' for a wildcard): what can still make a longer suffix public.
        self._longer: dict[tuple[str, ...], set[str]] = {}
        with open(PSLFILE, encoding="utf-8") as source:
            for line in source:
                rule = line.strip().split(" ")[0].lower()
                if not rule or rule.startswith("//"):
                    continue
                for spelling in {rule, _ascii(rule)}:
                    labels = tuple(spelling.lstrip("!").split("."))
                    for start in range(1, len(labels)):
                        self._longer.setdefault(labels[start:], set()).add(labels[start - 1])

    def registrable(self, host: str) -> str | None:
        """The registrable domain of `host` (a name, not an IP address), None for a public suffix itself."""
        return self._list.privatesuffix(host.removesuffix("."))

    def longer_rules(self, labels: Sequence[str]) -> frozenset[str]:
        """The labels that, put left of `labels`, can start a longer rule of the list ('*': any label)."""
        return frozenset(self._longer.get(tuple(labels), ()))


def _ascii(rule: str) -> str:
    try:
        return rule.encode("idna").decode("ascii")
    except UnicodeError:
        return rule


@functools.cache
def sites() -> Sites:
    """The list, read once."""
    return Sites()
