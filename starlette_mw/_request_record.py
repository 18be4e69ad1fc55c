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
  middleware; the one that `App` and `install()` put in its place (`_app/errors.py`) makes the
  record and sets `error_edits`, where a middleware registers (`wrap_error_response`) the edit
  that puts its headers on that response.

Each layer that takes part takes the record when the request comes in, and makes it if the scope
has none yet (`record_of`): whichever layer is outermost makes it, and the layers inside find the
same object, through any copy of the scope made in between. (A CORS layer outside a timing layer
that looked only at its response start would miss the record when a middleware between the two
had copied the scope.) A request costs each layer one dictionary look-up, and one small object.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence

from starlette.types import Scope

from starlette_mw._http import has_any

__all__ = [
    "EXPOSURE_HEADERS",
    "SCOPE_KEY",
    "SERVER_TIMING",
    "Edit",
    "Headers",
    "RequestRecord",
    "allow_origin",
    "announce_headers",
    "headers_added",
    "record_of",
    "wrap_error_response",
]

SCOPE_KEY = "starlette_mw.request"
SERVER_TIMING = b"Server-Timing"  # as TimingMiddleware names it in the list of exposed headers

Headers = list[tuple[bytes, bytes]]
Edit = Callable[[Headers], Headers]
"""A middleware's change to a response start: takes its headers (a list of its own to change) and returns them."""

logger = logging.getLogger("starlette_mw")
_warned: weakref.WeakSet[object] = weakref.WeakSet()


class RequestRecord:
    """What the package's layers share about one request.

    Made for every request: its fields are class attributes until a layer sets them.
    """

    # Response headers a layer will add that a page on an allowed origin should read, whether it
    # has added them yet, and the origin a CORS layer inside that one allowed.
    exposed: Sequence[bytes] = ()
    added = False
    cors_origin: bytes | None = None
    # Set by the error layer: each middleware's edit of the error response, in the order they
    # registered (None for one whose edit raised for this request).
    error_edits: dict[object, Edit | None] | None = None


def _names(value: bytes) -> set[bytes]:
    return {name.strip().lower() for name in value.split(b",")}


_EXPOSE = b"access-control-expose-headers"
_ALLOW = b"timing-allow-origin"
EXPOSURE_HEADERS = frozenset([_EXPOSE, _ALLOW])  # the headers `expose` adds to


def _index(headers: list[tuple[bytes, bytes]], lowered: bytes) -> int:
    return next(index for index, (name, _) in enumerate(headers) if name.lower() == lowered)


def expose(headers: list[tuple[bytes, bytes]], names: Sequence[bytes], origin: bytes) -> None:
    """Add `names` to Access-Control-Expose-Headers and `origin` to Timing-Allow-Origin, in place.

    `origin` is the response's Access-Control-Allow-Origin: the page's origin, or "*".
    Timing-Allow-Origin opens the response's Resource Timing to the page; it is added only with
    `SERVER_TIMING` among `names`, where it lets the page read the metrics.
    """
    timing = SERVER_TIMING in names
    if not has_any(headers, EXPOSURE_HEADERS):
        headers.append((_EXPOSE, b", ".join(names)))
        if timing:
            headers.append((_ALLOW, origin))
        return
    present = {name.lower() for name, _ in headers}
    if _EXPOSE not in present:
        headers.append((_EXPOSE, b", ".join(names)))
    else:
        index = _index(headers, _EXPOSE)
        name, value = headers[index]
        exposed = _names(value)
        missing = [added for added in names if added.lower() not in exposed]
        if missing:
            headers[index] = (name, b", ".join([value, *missing]))
    if not timing:
        return
    if _ALLOW not in present:
        headers.append((_ALLOW, origin))
    else:
        index = _index(headers, _ALLOW)
        name, value = headers[index]
        allowed = _names(value)
        if b"*" not in allowed and origin.lower() not in allowed:
            headers[index] = (name, value + b", " + origin)


def record_of(scope: Scope) -> RequestRecord:
    """The request's record, made if the scope has none yet; take it when the request comes in."""
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    if record is None:
        record = scope[SCOPE_KEY] = RequestRecord()
    return record


def announce_headers(scope: Scope, names: Sequence[bytes]) -> RequestRecord:
    """A layer will add the headers `names` to this request's response: a CORS layer is to expose
    them to the origin it allows. Returns the record to pass to `headers_added`."""
    record = record_of(scope)
    record.exposed = names
    return record


def headers_added(record: RequestRecord, headers: list[tuple[bytes, bytes]]) -> None:
    """The announced headers are in the response start's `headers`: expose them to the origin a
    CORS layer inside the announcing one allowed, if one did; a CORS layer outside it exposes them."""
    record.added = True
    if record.cors_origin is not None:
        expose(headers, record.exposed, record.cors_origin)


def allow_origin(
    record: RequestRecord, headers: list[tuple[bytes, bytes]], origin: bytes, *, known_absent: bool = False
) -> None:
    """A CORS layer allowed `origin` (call it only if `record.exposed`): expose the announced
    headers if they are in `headers` already, or leave the origin for the layer that adds them.
    `known_absent`: the layer knows `headers` has neither Access-Control-Expose-Headers nor
    Timing-Allow-Origin."""
    if record.added and known_absent:  # the usual case, with nothing to merge: `expose`'s first branch
        names = record.exposed
        headers.append((_EXPOSE, b", ".join(names)))
        if SERVER_TIMING in names:
            headers.append((_ALLOW, origin))
    elif record.added:
        expose(headers, record.exposed, origin)
    else:
        record.cors_origin = origin


def wrap_error_response(scope: Scope, edit: Edit, owner: object, *, warn: bool) -> None:
    """Have the response that goes out for this request after an exception get `edit`.

    A middleware calls this whenever an exception (or a cancellation) escapes its app, even after
    a response start passed through it: a start held back by a middleware outside it (GZip holds
    it until the first body chunk) or refused there never reaches the client, and the error
    response needs the headers then. Without the error layer (an app that is neither `App` nor
    installed), logs once per `owner` (the middleware instance) how to fix it, if `warn`.
    """
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    edits = None if record is None else record.error_edits
    if edits is not None:
        if owner not in edits or edits[owner] is not None:  # (None: it raised for this request)
            edits[owner] = edit
    elif warn and owner not in _warned:
        _warned.add(owner)
        logger.warning(
            "%s could not add its headers to the error response: Starlette sends its 500 from "
            "ServerErrorMiddleware, outside every middleware. Use starlette_mw.App, or call "
            "starlette_mw.install(app) before the app starts.",
            type(owner).__name__,
        )
