"""Where a client goes when it follows a Location, and whether that is the request it just made.

Issue 15: `Redirect("/go", "/{?to}")` answered `GET /go?to=go` with `301 /go?to=go`, so a link to
it kept a browser redirecting. A query parameter of the request can make any target equal to the
request's own URL, so the middleware asks `repeats()` before it sends a redirect, and the loop
check follows Locations with `resolved_path()` as a client does.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from starlette_mw._http import DEFAULT_PORTS
from starlette_mw._redirects.rules import HOST, PATH_SAFE

_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
# Bytes that split a query into parameters or a parameter into name and value, or stand for a
# space ('+'): written out they mean something other than their escape, so the two stay apart.
_QUERY_DELIMITERS = frozenset(b"&=+")
# RFC 3986 section 2.3: an escape of one of these is the character itself.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def resolved_path(path: str) -> str:
    """A URL's path as a server sees it once a client has sent it: '.' and '..' segments resolved,
    also when spelled '%2e' (as the WHATWG URL parser reads them), then percent-decoded."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for number, segment in enumerate(segments):
        dots = segment.lower().replace("%2e", ".")
        if dots == "..":
            if kept:
                kept.pop()
        elif dots != ".":
            kept.append(segment)
            continue
        if number == len(segments) - 1:
            kept.append("")  # '/a/b/..' is '/a/': the path keeps its final slash
    return unquote("/" + "/".join(kept))


def next_method(method: str, status: int) -> str:
    """The method a client follows a redirect with: GET after a 303 (but HEAD stays HEAD), and after
    a 301 or 302 in answer to a POST (the Fetch standard, "HTTP-redirect fetch")."""
    if (status == 303 and method not in ("GET", "HEAD")) or (status in (301, 302) and method == "POST"):
        return "GET"
    return method


def repeats(
    location: str,
    status: int,
    *,
    method: str,
    scheme: str,
    host: str | None,
    path: str,
    raw_path: bytes | None,
    query_string: bytes,
) -> bool:
    """Whether following `location` makes the client send this request again: the same method, and
    the same URL as a browser resolves it.

    The same URL: the same scheme, host and port (a relative Location keeps the request's; a request
    without one Host header has no host to compare, so no absolute Location is its own), the same
    path once dot segments are resolved and escapes decoded, and the same query once escapes of
    unreserved characters are decoded and other characters escaped alike (a browser sends `'` as
    `%27`). `path` is the request's whole path (root_path included), decoded; `raw_path` as sent.
    """
    if next_method(method, status) != method:
        return False  # Post/Redirect/Get: the client comes back with a GET, another request
    url = urlsplit(location)
    if url.netloc:
        if url.scheme != scheme or host is None:
            return False
        ours = HOST.fullmatch(host.lower())
        theirs = HOST.fullmatch(url.netloc)
        if ours is None or theirs is None or ours["name"] != theirs["name"]:
            return False
        default = DEFAULT_PORTS.get(scheme)
        if (ours["port"] or default) != (theirs["port"] or default):
            return False
    spelled = None if raw_path is None else raw_path.decode("latin-1")
    if spelled is None or unquote(spelled) != path:
        spelled = quote(path, safe=PATH_SAFE)
    if resolved_path(url.path) != resolved_path(spelled):
        return False
    return _query_key(url.query.encode("latin-1")) == _query_key(query_string)


def _query_key(query: bytes) -> bytes:
    """A query in one spelling per meaning: unreserved characters plain, delimiters as sent, the
    rest escaped with capital hex digits (a lone '%' as '%25')."""
    out = bytearray()
    position = 0
    while position < len(query):
        escape = _ESCAPE.match(query, position)
        if escape is not None:
            byte = int(query[position + 1 : position + 3], 16)
            position += 3
        else:
            byte = query[position]
            position += 1
        if byte in _UNRESERVED or (escape is None and byte in _QUERY_DELIMITERS):
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)
