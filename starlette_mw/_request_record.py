"""How the package's layers cooperate on one request: a record in its scope, never an import.

Starlette's middlewares never import one another; neither do these. A layer that needs another's
help for the current request finds a `RequestRecord` under `SCOPE_KEY` in the scope, which every
copy of the scope shares (a copy keeps the same object):

- Headers to expose. A cross-origin page reads a response header only if
  `Access-Control-Expose-Headers` names it, and Server-Timing's metrics only if
  `Timing-Allow-Origin` allows the page
  (https://fetch.spec.whatwg.org/#http-access-control-expose-headers,
  https://www.w3.org/TR/resource-timing/#sec-timing-allow-origin). A layer that adds such headers
  (TimingMiddleware) names them with `announce_headers` when the request comes in, and calls
  `headers_added` once they are in the response start; a CORS layer calls `allow_origin` with the
  origin it allowed, if a layer announced headers. Whichever of the two edits the start last
  exposes the headers, so the order of the two in the stack does not matter.
- The error response. Starlette sends its 500 from `ServerErrorMiddleware`, outside every
  middleware; the error layer that `App` and `install()` add sets `error_wrappers`, where a
  middleware registers (`wrap_error_response`) the `send` wrapper that puts its headers on it.

A layer that asks makes the record if the scope has none (`record_in`); one that only answers (a
CORS layer) reads it, and does nothing without one: a request no layer asks about costs it one
dictionary look-up.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence

from starlette.types import Scope, Send

__all__ = [
    "SCOPE_KEY",
    "SERVER_TIMING",
    "RequestRecord",
    "SendWrapper",
    "allow_origin",
    "announce_headers",
    "headers_added",
    "record_in",
    "response_started",
    "send_wrapper_failed",
    "wrap_error_response",
]

SCOPE_KEY = "starlette_mw.request"
SERVER_TIMING = b"Server-Timing"  # as TimingMiddleware names it in the list of exposed headers

SendWrapper = Callable[[Send], Send]

logger = logging.getLogger("starlette_mw")
_warned: weakref.WeakSet[object] = weakref.WeakSet()


class RequestRecord:
    """What the package's layers share about one request."""

    __slots__ = ("added", "cors_origin", "error_wrappers", "exposed")

    def __init__(self) -> None:
        # Response headers a layer will add that a page on an allowed origin should read, whether
        # it has added them yet, and the origin a CORS layer inside that one allowed.
        self.exposed: Sequence[bytes] = ()
        self.added = False
        self.cors_origin: bytes | None = None
        # Set by the error layer: each middleware's wrapper for the error response, in the order
        # they registered (None for one whose wrapper raised for this request).
        self.error_wrappers: dict[object, SendWrapper | None] | None = None


def record_in(scope: Scope) -> RequestRecord:
    """The request's record, made now if the scope has none."""
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    if record is None:
        record = scope[SCOPE_KEY] = RequestRecord()
    return record


def _names(value: bytes) -> set[bytes]:
    return {name.strip().lower() for name in value.split(b",")}


_EXPOSE = b"access-control-expose-headers"
_ALLOW = b"timing-allow-origin"


def expose(headers: list[tuple[bytes, bytes]], names: Sequence[bytes], origin: bytes) -> None:
    """Add `names` to Access-Control-Expose-Headers and `origin` to Timing-Allow-Origin, in place.

    `origin` is the response's Access-Control-Allow-Origin: the page's origin, or "*".
    Timing-Allow-Origin opens the response's Resource Timing to the page; it is added only with
    `SERVER_TIMING` among `names`, where it lets the page read the metrics.
    """
    lowered = [name.lower() for name, _ in headers]
    if _EXPOSE not in lowered:
        headers.append((_EXPOSE, b", ".join(names)))
    else:
        index = lowered.index(_EXPOSE)
        name, value = headers[index]
        exposed = _names(value)
        missing = [added for added in names if added.lower() not in exposed]
        if missing:
            headers[index] = (name, b", ".join([value, *missing]))
    if SERVER_TIMING not in names:
        return
    if _ALLOW not in lowered:
        headers.append((_ALLOW, origin))
    else:
        index = lowered.index(_ALLOW)
        name, value = headers[index]
        allowed = _names(value)
        if b"*" not in allowed and origin.lower() not in allowed:
            headers[index] = (name, value + b", " + origin)


def announce_headers(scope: Scope, names: Sequence[bytes]) -> RequestRecord:
    """A layer will add the headers `names` to this request's response: a CORS layer is to expose
    them to the origin it allows. Returns the record to pass to `headers_added`."""
    record = record_in(scope)
    record.exposed = names
    return record


def headers_added(record: RequestRecord, headers: list[tuple[bytes, bytes]]) -> None:
    """The announced headers are in the response start's `headers`: expose them to the origin a
    CORS layer inside the announcing one allowed, if one did; a CORS layer outside it exposes them."""
    record.added = True
    if record.cors_origin is not None:
        expose(headers, record.exposed, record.cors_origin)


def allow_origin(record: RequestRecord, headers: list[tuple[bytes, bytes]], origin: bytes) -> None:
    """A CORS layer allowed `origin` (call it only if `record.exposed`): expose the announced
    headers if they are in `headers` already, or leave the origin for the layer that adds them."""
    if record.added:
        expose(headers, record.exposed, origin)
    else:
        record.cors_origin = origin


def wrap_error_response(scope: Scope, wrap: SendWrapper, owner: object, *, warn: bool) -> None:
    """Have the response that goes out for this request after an exception pass through `wrap`.

    A middleware calls this whenever an exception (or a cancellation) escapes its app, even after
    a response start passed through it: a start held back by a middleware outside it (GZip holds
    it until the first body chunk) or refused there never reaches the client, and the error
    response needs the headers then. Without the error layer (an app that is neither `App` nor
    installed), logs once per `owner` (the middleware instance) how to fix it, if `warn`.
    """
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    wrappers = None if record is None else record.error_wrappers
    if wrappers is not None:
        if owner not in wrappers or wrappers[owner] is not None:  # (None: it raised for this request)
            wrappers[owner] = wrap
    elif warn and owner not in _warned:
        _warned.add(owner)
        logger.warning(
            "%s could not add its headers to the error response: Starlette sends its 500 from "
            "ServerErrorMiddleware, outside every middleware. Use starlette_mw.App, or call "
            "starlette_mw.install(app) before the app starts.",
            type(owner).__name__,
        )


def response_started(scope: Scope, owner: object) -> None:
    """A response start passed through `owner`: drop what it registered for an earlier error.

    A middleware outside it that retried the app after the error (or answered it itself through
    the app) sends a response that `owner` has already edited.
    """
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    if record is not None and record.error_wrappers:
        record.error_wrappers.pop(owner, None)


def send_wrapper_failed(scope: Scope, owner: object) -> None:
    """`owner`'s send wrapper raised for this request: the error response goes out without it.

    Call it where the wrapper catches its own failure, then re-raise. Run again on the 500, it would
    fail the same way (a function of the request that raised, say), and the 500 could not be sent.
    """
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    if record is not None and record.error_wrappers is not None:
        record.error_wrappers[owner] = None
