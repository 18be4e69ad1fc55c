"""How `CORSMiddleware` and `TimingMiddleware` let a page on an allowed origin read the timing headers.

A cross-origin page reads a response header only if `Access-Control-Expose-Headers` names it, and
Server-Timing's metrics only if `Timing-Allow-Origin` allows the page
(https://fetch.spec.whatwg.org/#http-access-control-expose-headers,
https://www.w3.org/TR/resource-timing/#sec-timing-allow-origin). Whichever of the two middleware
edits the response start last adds both, so the order of the two in the stack does not matter:

- CORS outside Timing: Timing has already added its headers when CORS's `send` sees the start;
  CORS finds Timing's per-request record in the scope (`RequestMetrics`), marked sent, and its
  `share_with_cors` calls `expose_timing`.
- CORS inside Timing: CORS sees the start first; `share_with_cors` leaves the origin it allowed
  on that record, and Timing's `expose_to_cors` calls `expose_timing` when it adds its headers.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SERVER_TIMING", "expose_timing"]

SERVER_TIMING = b"Server-Timing"  # as TimingMiddleware names it in the list of exposed headers


def _names(value: bytes) -> set[bytes]:
    return {name.strip().lower() for name in value.split(b",")}


_EXPOSE = b"access-control-expose-headers"
_ALLOW = b"timing-allow-origin"


def expose_timing(headers: list[tuple[bytes, bytes]], names: Sequence[bytes], origin: bytes) -> None:
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
