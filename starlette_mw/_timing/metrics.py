"""Server-Timing metrics of one request: what handlers record with `timing()` and `record_timing()`.

TimingMiddleware keeps a `RequestMetrics` in the scope of each request it handles and writes its
entries into the Server-Timing header when the response starts. The syntax of a metric:
https://www.w3.org/TR/server-timing/#the-server-timing-header-field
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from starlette.requests import HTTPConnection
from starlette.types import Scope

from starlette_mw._http import TCHAR, TOKEN

__all__ = ["RequestMetrics", "Timer", "check_token", "metrics_class", "metrics_of", "quote", "record_timing", "timing"]

P = ParamSpec("P")
R = TypeVar("R")

SCOPE_KEY = "starlette_mw.timing"
# What a quoted-string may not hold as is (RFC 9110 section 5.6.4): '"' and '\' get a backslash;
# control characters, which could end the header line, become spaces. Non-ASCII text is kept, as
# UTF-8 bytes (obs-text); browsers show those bytes as Latin-1. A lone surrogate has no UTF-8 form
# (`request.json()` makes one of '"\\ud800"'): it becomes U+FFFD, as a UTF-8 decoder shows bad bytes.
_UNQUOTABLE = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]')


def check_token(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} {value!r} has type {type(value).__name__}; use a string such as 'db'.")
    if not TOKEN.fullmatch(value):
        fixed = re.sub(f"[^{TCHAR}]+", "-", value).strip("-") or "metric"
        raise ValueError(
            f"{what} {value!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only, no spaces or "
            f"quotes), so it cannot go into a header as is; use a name such as {fixed!r} and put free text "
            "in the description."
        )
    return value


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return "\ufffd" if "\ud800" <= char <= "\udfff" else " "


def quote(text: str) -> str:
    return '"' + _UNQUOTABLE.sub(_escape, text) + '"'


def check_description(description: object, what: str) -> str | None:
    if description is not None and not isinstance(description, str):
        raise TypeError(f"{what} {description!r} has type {type(description).__name__}; use a string or None.")
    return description


class RequestMetrics:
    """One request's metrics, held in its scope until the response starts.

    Made for every request, so its fields are class attributes until set: `entries` gets a list of
    its own at the first metric. TimingMiddleware sets `sent` when it writes the header; later
    metrics are dropped (a second start, the error response after one held back outside, gets the
    same ones).
    """

    entries: tuple[bytes, ...] | list[bytes] = ()  # as they go into the header (UTF-8: descriptions may not be ASCII)
    sent = False
    precision = 3  # decimals of milliseconds: each precision has a class of its own (`metrics_class`)

    def add(self, name: str, seconds: float | None, description: str | None) -> None:
        if self.sent:  # the header has gone out; a later metric has nowhere to go
            return
        entry = name if seconds is None else f"{name};dur={seconds * 1000:.{self.precision}f}"
        entries = self.entries
        if not isinstance(entries, list):
            entries = self.entries = []
        entries.append((entry if not description else f"{entry};desc={quote(description)}").encode())


@functools.cache
def metrics_class(precision: int) -> type[RequestMetrics]:
    """The `RequestMetrics` of a TimingMiddleware with this precision: a request's costs no `__init__`."""
    return type("RequestMetrics", (RequestMetrics,), {"precision": precision})


def metrics_of(request: HTTPConnection | Scope) -> RequestMetrics | None:
    scope = request.scope if isinstance(request, HTTPConnection) else request
    metrics: RequestMetrics | None = scope.get(SCOPE_KEY)
    return metrics


def _milliseconds(seconds: float) -> float:
    try:
        return float(seconds) * 1000
    except OverflowError:  # an int beyond any float
        return math.inf


def record_timing(
    request: HTTPConnection | Scope, name: str, seconds: float | None = None, description: str | None = None
) -> None:
    """Add a metric to the request's Server-Timing header: a duration in seconds, a description, or both.

    `request` is the endpoint's request, or the scope in a plain ASGI middleware. Without a
    TimingMiddleware handling the request (none in the stack, path excluded, `enabled=` said no),
    this records nothing, so handlers need not care; it still checks its arguments.

        record_timing(request, "cache", description="hit")
        record_timing(request, "render", time.perf_counter() - started)
    """
    check_token(name, "Server-Timing metric name")
    check_description(description, f"Description of metric {name!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise TypeError(f"Duration of metric {name!r} is {seconds!r}; give seconds as a number, or None.")
    # In milliseconds, as the header has them: an int or float too large for that (10**400, 1e306)
    # would fail or read "inf" when the header is written.
    if seconds is not None and not 0 <= _milliseconds(seconds) < math.inf:  # NaN fails both comparisons
        # (repr() of an int of thousands of digits raises: Python's limit on int-to-str conversion.)
        shown = repr(seconds) if isinstance(seconds, float) or abs(seconds) < 10**20 else "a number beyond any float"
        raise ValueError(
            f"Duration of metric {name!r} is {shown}; Server-Timing durations are finite and not negative, "
            "so give the seconds measured (time.perf_counter() differences), or None."
        )
    metrics = metrics_of(request)
    if metrics is not None:
        metrics.add(name, seconds, description)


class Timer:
    """Times a block (`with`, `async with`) or each call of a function (as a decorator) into a metric.

    Made by `timing()`. Metrics are kept in the order they finish; a name may repeat.

        async with timing(request, "db", "load users"):  # in an endpoint
            rows = await load_users()
        render = timing(request, "render")(render_users)  # each call of render() is timed
        response = render(rows)
    """

    __slots__ = ("_description", "_metrics", "_name", "_start")

    def __init__(self, metrics: RequestMetrics | None, name: str, description: str | None) -> None:
        self._metrics = metrics
        self._name = name
        self._description = description
        self._start = 0.0

    def _record(self, start: float) -> None:
        if self._metrics is not None:
            self._metrics.add(self._name, time.perf_counter() - start, self._description)

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._record(self._start)

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(self, *exc_info: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._record(self._start)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        # Each call has its own start, so a decorated function may run several times at once.
        if inspect.iscoroutinefunction(func):
            coroutine_function = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def timed_coroutine(*args: P.args, **kwargs: P.kwargs) -> Any:
                start = time.perf_counter()
                try:
                    return await coroutine_function(*args, **kwargs)
                finally:
                    self._record(start)

            return cast(Callable[P, R], timed_coroutine)

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._record(start)

        return timed


def timing(request: HTTPConnection | Scope, name: str, description: str | None = None) -> Timer:
    """Time a block or a function into a Server-Timing metric of this request.

        with timing(request, "db", "query users"):
            users = await load_users()

        @timing(request, "render")
        def render(users): ...

    `request` is the endpoint's request, or the scope in a plain ASGI middleware. Only metrics that
    end before the response starts reach the header. Without a TimingMiddleware handling the
    request, the timer records nothing; its name and description are still checked.
    """
    check_token(name, "Server-Timing metric name")
    check_description(description, f"Description of metric {name!r}")
    return Timer(metrics_of(request), name, description)
