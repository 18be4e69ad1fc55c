"""The `include=` / `exclude=` path patterns shared by every middleware in the package."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeAlias

from starlette.routing import compile_path
from starlette.types import Scope

from starlette_mw._starlette_routing import route_path

__all__ = [
    "Matcher",
    "PathFilter",
    "PathPattern",
    "PathPatterns",
    "compile_patterns",
    "route_fullmatch",
    "route_path",
]

PathPattern: TypeAlias = "str | re.Pattern[str]"
PathPatterns: TypeAlias = "PathPattern | Sequence[PathPattern] | None"
# Called with the path the routes see; truthy when the pattern matches it.
Matcher: TypeAlias = Callable[[str], object]


def _match_all(path: str) -> bool:
    return True


def route_fullmatch(regex: re.Pattern[str], path: str) -> re.Match[str] | None:
    """`regex` over the whole path as a route's regex ('^...$' through re.match) matches it: all of
    it, or all of it but a final newline, which '$' lets through. Not by wrapping the regex in
    '^...$', which would break its inline flags; `endpos` leaves the newline out as if the path
    ended before it. RedirectMiddleware's sources match through this too."""
    return regex.fullmatch(path) or (regex.fullmatch(path, 0, len(path) - 1) if path[-1:] == "\n" else None)


def _regex_matcher(regex: re.Pattern[str]) -> Matcher:
    def matches(path: str) -> bool:
        return route_fullmatch(regex, path) is not None

    return matches


def _to_matcher(pattern: PathPattern, option: str) -> Matcher:
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise TypeError(
                f"{option} pattern {pattern!r} is a bytes regular expression; paths are str, "
                f"so compile a str pattern instead, as in re.compile({pattern.pattern.decode('latin-1')!r})."
            )
        # Used as given: each pattern keeps its own flags, group names and backreferences.
        return _regex_matcher(pattern)
    if not isinstance(pattern, str):
        raise TypeError(
            f"{option} pattern {pattern!r} has type {type(pattern).__name__}; "
            "use a path string such as '/health' or '/api/*', or a compiled regular expression."
        )
    if not pattern.startswith("/"):
        raise ValueError(f"{option} pattern {pattern!r} must start with '/', as in '/{pattern.lstrip('/')}'.")
    subtree = pattern.endswith("/*")
    path = pattern[:-2] if subtree else pattern
    if "*" in path:
        raise ValueError(
            f"{option} pattern {pattern!r} has a '*' that is not a final '/*'; "
            "'/*' may only end a pattern ('/api/*'), or use a compiled regular expression."
        )
    if subtree and not path:
        return _match_all  # '/*'
    try:
        # The regex a `Route(path)` compiles, so the pattern matches what that route receives:
        # the same convertors (registered ones too), and the final newline that '$' lets through.
        route = compile_path(path)[0]
    except (AssertionError, KeyError, ValueError) as exc:  # Starlette asserts on an unknown convertor
        raise ValueError(
            f"{option} pattern {pattern!r} is not a valid Starlette path ({exc}); "
            "name each parameter once and use a known convertor, as in '/users/{id:int}'."
        ) from None
    if not subtree:
        return route.match  # the call Route.matches makes
    # '/api/*': what the route '/api' receives, and every path that goes on with '/' after it,
    # whatever follows. That covers what a Mount('/api') receives, and also what its '.*' refuses
    # but a route such as '/api/{name}' takes ('/api/a\nb'). Never '/apix'. compile_path ends a
    # path's regex with '$'; the router tests in tests/app/test_paths_router.py fail if that changes.
    return re.compile(route.pattern.removesuffix("$") + "(?:/|$)", route.flags).match


def compile_patterns(patterns: PathPatterns, option: str) -> tuple[Matcher, ...] | None:
    if patterns is None:
        return None
    if isinstance(patterns, str | re.Pattern):
        patterns = [patterns]
    elif not isinstance(patterns, Sequence):
        # Not any iterable: Starlette builds the stack anew (describe() does too), and a generator
        # would reach the second build empty.
        raise TypeError(
            f"{option}={patterns!r} has type {type(patterns).__name__}; use a path string such as '/health' "
            "or '/api/*', a compiled regular expression, or a list or tuple of them."
        )
    # Kept apart rather than joined into one regex: joined, two '{id}' patterns would define the
    # group 'id' twice, and a regex's own inline flags or backreferences would break.
    matchers = tuple(_to_matcher(pattern, option) for pattern in patterns)
    if not matchers:
        raise ValueError(f"{option}=[] matches no path; pass None (the default) to leave it out.")
    return matchers


class PathFilter:
    """Answers whether a middleware should handle a request, from `include=` and `exclude=` patterns.

    A pattern is an exact path (`"/health"`) or Starlette's path syntax (`"/users/{id:int}"`), which
    match what `Route(pattern)` receives (a final newline too, as the route's `$` allows); a subtree
    (`"/api/*"` matches what `Route("/api")` receives and every path that begins `/api/`); `"/*"`,
    every path; or a compiled regular expression, which must match the whole path but a final
    newline. `exclude` wins over `include`; `include=None` means every path.

        >>> paths = PathFilter(include="/api/*", exclude=["/api/health"])
        >>> paths.matches("/api/users"), paths.matches("/api/health"), paths.matches("/")
        (True, False, False)
    """

    __slots__ = ("_exclude", "_include", "everything")

    def __init__(self, include: PathPatterns = None, exclude: PathPatterns = None) -> None:
        self._include = compile_patterns(include, "include")
        self._exclude = compile_patterns(exclude, "exclude")
        self.everything = self._include is None and self._exclude is None

    def matches(self, path: str) -> bool:
        if self._exclude is not None and any(match(path) for match in self._exclude):
            return False
        return self._include is None or any(match(path) for match in self._include)

    def __call__(self, scope: Scope) -> bool:
        return self.everything or self.matches(route_path(scope))
