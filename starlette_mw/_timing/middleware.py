"""`TimingMiddleware`: X-Process-Time and W3C Server-Timing, with metrics of the app's own.

Server-Timing: https://www.w3.org/TR/server-timing/ (the header's syntax, section 3) and
Resource Timing's Timing-Allow-Origin check, which decides whether a page on another origin may
read the metrics: https://www.w3.org/TR/resource-timing/#sec-timing-allow-origin
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._engine.plain import PlainMiddleware
from starlette_mw._http import check_origin, has_any, is_origin, merge_vary
from starlette_mw._paths import PathPatterns
from starlette_mw._registration import is_async
from starlette_mw._request_record import (
    SERVER_TIMING,
    Headers,
    RequestRecord,
    announce_headers,
    headers_added,
    wrap_error_response,
)
from starlette_mw._timing.metrics import (
    SCOPE_KEY,
    RequestMetrics,
    Timer,
    check_description,
    check_token,
    metrics_class,
    quote,
    record_timing,
    timing,
)

__all__ = ["Timer", "TimingAllowOrigin", "TimingMiddleware", "record_timing", "timing"]

Origins: TypeAlias = str | Sequence[str]
TimingAllowOrigin: TypeAlias = Origins | Callable[[Request], Origins | None] | None
"""What `TimingMiddleware(timing_allow_origin=...)` takes: "*", an origin, a list of them, or a function of the request.

A function returning the request's own `Origin` when it is one of yours:

    def front_ends(request: Request) -> str | None:
        origin = request.headers.get("Origin")  # checked: only `*` or an origin reaches the header
        return origin if origin in {"https://app.example.com", "https://admin.example.com"} else None

    allowed: TimingAllowOrigin = front_ends
    app.add_middleware(TimingMiddleware, timing_allow_origin=allowed)
"""


# What X-Process-Time may not be called. TimingMiddleware drops the app's header of that name and
# writes a number: under these it would break the message's framing (a Content-Length of
# "0.000123") or pass for one of the timing headers (a metric named "0.000123").
_NOT_PROCESS_TIME = frozenset(
    ["connection", "content-length", "keep-alive", "server-timing", "te", "timing-allow-origin", "trailer",
     "transfer-encoding", "upgrade"]
)  # fmt: skip


def _origin_list(value: object, option: str) -> list[str]:
    origins = [value] if isinstance(value, str) else value
    # (bytes are a Sequence too, of ints: refused whole rather than as "origin 104 has type int")
    if not isinstance(origins, Sequence) or isinstance(origins, bytes | bytearray | memoryview):
        raise TypeError(
            f"{option}={value!r} has type {type(value).__name__}; use '*', an origin such as "
            "'https://app.example.com', a list of origins, or a function of the request returning one."
        )
    return ["*" if origin == "*" else check_origin(origin, option) for origin in origins]


def _refuse_async(value: object, option: str) -> None:
    if is_async(value):
        raise TypeError(
            f"{option} function {value!r} is an 'async def' function; it runs for every request before the "
            "app, so it must be a plain function of the request (def f(request) -> ...)."
        )


class TimingMiddleware(PlainMiddleware):
    """Adds how long the app took to start its response, as `X-Process-Time` and `Server-Timing`.

        app.add_middleware(
            TimingMiddleware,
            timing_allow_origin="https://app.example.com",  # let that page read the metrics
            enabled=lambda request: request.client is not None and request.client.host == "10.0.0.7",
        )

    Both headers measure with `time.perf_counter()` from the request reaching this middleware to
    the app starting its response (for a streamed body, not its end). `X-Process-Time` is in
    seconds; `Server-Timing` holds the total in milliseconds (`app;dur=12.345`), then the metrics
    that handlers recorded with `timing()` and `record_timing()`.

    - `process_time_header`: its name, or None for none.
    - `server_timing`: False for no Server-Timing header; `metric`, `description`: the name and
      description of the total, `metric=None` to leave the total out; `precision`: decimals of
      milliseconds in every `dur` (X-Process-Time gets the same resolution in seconds).
    - `timing_allow_origin`: `Timing-Allow-Origin`, so pages on those origins can read the
      metrics: "*", an origin, a list of origins, or a function of the request returning those or
      None. Values a function returns that are not origins are left out.
    - `enabled`: a function of the request; False leaves that request alone (Server-Timing shows
      the inside of the app, so some show it to internal clients only).
    - `include` / `exclude`: path patterns, as for `@app.middleware("http")`.

    The headers are on error responses too, including the 500 Starlette renders when an endpoint
    raises, in an app made with `starlette_mw.App` or passed to `starlette_mw.install()`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        process_time_header: str | None = "X-Process-Time",
        server_timing: bool = True,
        metric: str | None = "app",
        description: str | None = None,
        precision: int = 3,
        timing_allow_origin: TimingAllowOrigin = None,
        enabled: Callable[[Request], bool] | None = None,
        include: PathPatterns = None,
        exclude: PathPatterns = None,
    ) -> None:
        super().__init__(app, include=include, exclude=exclude)
        if process_time_header is not None:
            check_token(process_time_header, "process_time_header")
            if process_time_header.lower() in _NOT_PROCESS_TIME:
                raise ValueError(
                    f"process_time_header={process_time_header!r} names a header that HTTP or TimingMiddleware "
                    "itself gives another meaning, and the time would replace it; use a name of its own, such as "
                    "'X-Process-Time'."
                )
        if metric is not None:
            check_token(metric, "Server-Timing metric name")
        check_description(description, "description")
        if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 6:
            raise ValueError(
                f"precision={precision!r} must be a whole number of decimals from 0 to 6 "
                "(3, the default, gives microseconds)."
            )
        if process_time_header is None and not server_timing:
            raise ValueError(
                "TimingMiddleware with process_time_header=None and server_timing=False adds no header; "
                "keep one of them, or remove the middleware."
            )
        if enabled is not None:
            if not callable(enabled):
                raise TypeError(f"enabled={enabled!r} is not callable; pass a function of the request, or None.")
            _refuse_async(enabled, "enabled=")
        self.enabled = enabled

        self._process_time = None if process_time_header is None else process_time_header.lower().encode("ascii")
        self._server_timing = server_timing
        self._metrics_class = metrics_class(precision)
        # The total's entry, as a format of its `dur` in milliseconds. A '%' in what is configured (a
        # token may hold one, and a description anything) is doubled, so it stands for itself.
        self._total_format: bytes | None = None
        if metric is not None:
            described = f";desc={quote(description)}".encode() if description else b""
            literal = (metric.encode("ascii"), described)
            before, after = (part.replace(b"%", b"%%") for part in literal)
            self._total_format = before + b";dur=%%.%df" % precision + after
        self._seconds_format = b"%%.%df" % (precision + 3)  # X-Process-Time: the same resolution, in seconds
        # What a CORS layer exposes to the origins it allows (_request_record.py).
        exposed = [] if process_time_header is None else [process_time_header.encode("ascii")]
        self._exposed = (*exposed, SERVER_TIMING) if server_timing else tuple(exposed)

        self._tao_function: Callable[[Request], Origins | None] | None = None
        self._tao: bytes | None = None
        if callable(timing_allow_origin):
            _refuse_async(timing_allow_origin, "timing_allow_origin=")
            self._tao_function = timing_allow_origin
        elif timing_allow_origin is not None:
            origins = _origin_list(timing_allow_origin, "timing_allow_origin")
            if not origins:
                raise ValueError("timing_allow_origin=[] allows no origin; pass None (the default) to leave it out.")
            self._tao = ", ".join(origins).encode("ascii")
        # Headers this middleware sets rather than adds to; Server-Timing is a list and may repeat.
        self._replaced_but_tao = frozenset([self._process_time] if self._process_time else [])
        self._replaced = self._replaced_but_tao | {b"timing-allow-origin"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send, checked: bool = False) -> None:
        if not (checked or self.direct) or scope["type"] != "http":
            return await self.pass_on(scope, receive, send)
        if self.enabled is not None and not self.enabled(Request(scope)):
            await self.app(scope, receive, send)
            return
        metrics = scope[SCOPE_KEY] = self._metrics_class()
        record = announce_headers(scope, self._exposed)
        start = time.perf_counter()

        def send_timed(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                errors = record.error_edits
                if errors:  # what it registered for an earlier error: this start gets the headers
                    errors.pop(self, None)
                try:
                    headers = self._headers(
                        list(message.get("headers", ())), time.perf_counter() - start, metrics, scope, record
                    )
                except Exception:  # a timing_allow_origin function that raised: not again on the 500
                    if errors is not None:
                        errors[self] = None
                    raise
                message["headers"] = headers  # (the start is the app's to send once, as Starlette's middleware assume)
            return send(message)

        try:
            await self.app(scope, receive, send_timed)
        except BaseException as exc:  # cancelled too: a dispatch outside that fails after call_next cancels the app
            edit = functools.partial(self._edit, start, metrics, scope, record)
            wrap_error_response(scope, edit, self, warn=isinstance(exc, Exception) and not metrics.sent)
            raise

    def _edit(
        self, start: float, metrics: RequestMetrics, scope: Scope, record: RequestRecord, headers: Headers
    ) -> Headers:
        """The headers on the error response (see `_request_record.py`)."""
        return self._headers(headers, time.perf_counter() - start, metrics, scope, record)

    def _asked_timing_allow_origin(self, function: Callable[[Request], Origins | None], scope: Scope) -> bytes | None:
        value = function(Request(scope))
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        elif not isinstance(value, Sequence):
            raise TypeError(
                f"timing_allow_origin function {function!r} returned {value!r}; "
                "it must return '*', an origin, a list of origins, or None."
            )
        # What the function returns may come from the request (its Origin header, say): keep only
        # what is an origin, so nothing else can reach the header.
        origins = [origin for origin in value if isinstance(origin, str) and (origin == "*" or is_origin(origin))]
        return ", ".join(origins).encode("ascii") if origins else None

    def _headers(
        self, headers: Headers, elapsed: float, metrics: RequestMetrics, scope: Scope, record: RequestRecord
    ) -> Headers:
        function = self._tao_function
        timing_allow_origin = self._tao if function is None else self._asked_timing_allow_origin(function, scope)
        # The app's own Timing-Allow-Origin is replaced only by one of ours.
        replaced = self._replaced if timing_allow_origin is not None else self._replaced_but_tao
        if has_any(headers, replaced):
            headers = [(name, value) for name, value in headers if name.lower() not in replaced]
        if self._process_time is not None:
            headers.append((self._process_time, self._seconds_format % elapsed))
        metrics.sent = True  # later metrics are dropped (a second start gets the same ones)
        entries = metrics.entries
        if self._server_timing:
            if self._total_format is not None:
                total = self._total_format % (elapsed * 1000)
                headers.append((b"server-timing", b", ".join([total, *entries]) if entries else total))
            elif entries:
                headers.append((b"server-timing", b", ".join(entries)))
        if timing_allow_origin is not None:
            headers.append((b"timing-allow-origin", timing_allow_origin))
        if function is not None:
            # A function may answer each origin differently (or not at all): caches must keep the
            # answers apart, whatever this one was.
            headers = merge_vary(headers, b"Origin")
        headers_added(record, headers)
        return headers
