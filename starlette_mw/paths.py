"""The `include=` / `exclude=` path patterns shared by every middleware in the package."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeAlias

from starlette.routing import compile_path
from starlette.types import Scope

PathPattern: TypeAlias = "str | re.Pattern[str]"
PathPatterns: TypeAlias = "PathPattern | Sequence[PathPattern] | None"


def route_path(scope: Scope) -> str:
    """The request path as the app's routes see it: without the `root_path` a proxy mounts it under."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        return path[len(root_path) :] or "/"
    return path


def _to_regex(pattern: PathPattern, option: str) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise TypeError(
                f"{option} pattern {pattern!r} is a bytes regular expression; paths are str, "
                f"so compile a str pattern instead, as in re.compile({pattern.pattern.decode('latin-1')!r})."
            )
        # Used as given: each pattern keeps its own flags, group names and backreferences.
        return pattern
    if not isinstance(pattern, str):
        raise TypeError(
            f"{option} pattern {pattern!r} has type {type(pattern).__name__}; "
            "use a path string such as '/health' or '/api/*', or a compiled regular expression."
        )
    if not pattern.startswith("/"):
        raise ValueError(f"{option} pattern {pattern!r} must start with '/', as in '/{pattern.lstrip('/')}'.")
    prefix = pattern.endswith("/*")
    body = pattern[:-2] if prefix else pattern
    if "*" in body:
        raise ValueError(
            f"{option} pattern {pattern!r} has a '*' that is not a final '/*'; "
            "'/*' may only end a pattern ('/api/*'), or use a compiled regular expression."
        )
    if "{" in body:
        try:
            regex = compile_path(body)[0].pattern.removeprefix("^").removesuffix("$")
        except (AssertionError, KeyError, ValueError) as exc:  # Starlette asserts on an unknown convertor
            raise ValueError(
                f"{option} pattern {pattern!r} is not a valid Starlette path ({exc}); "
                "name each parameter once and use a known convertor, as in '/users/{id:int}'."
            ) from None
    else:
        regex = re.escape(body)
    # '/api/*' matches '/api' itself and everything below it, never '/apix'.
    return re.compile(f"{regex}(?:/.*)?" if prefix else regex, re.DOTALL)


def compile_patterns(patterns: PathPatterns, option: str) -> tuple[re.Pattern[str], ...] | None:
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
    regexes = tuple(_to_regex(pattern, option) for pattern in patterns)
    if not regexes:
        raise ValueError(f"{option}=[] matches no path; pass None (the default) to leave it out.")
    return regexes


class PathFilter:
    """Answers whether a middleware should handle a request, from `include=` and `exclude=` patterns.

    A pattern is an exact path (`"/health"`), a subtree (`"/api/*"` matches `/api` and everything
    under `/api/`), Starlette's path syntax (`"/users/{id:int}"`), or a compiled regular expression,
    which must match the whole path. `exclude` wins over `include`; `include=None` means every path.

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
        if self._exclude is not None and any(regex.fullmatch(path) for regex in self._exclude):
            return False
        return self._include is None or any(regex.fullmatch(path) for regex in self._include)

    def __call__(self, scope: Scope) -> bool:
        return self.everything or self.matches(route_path(scope))
