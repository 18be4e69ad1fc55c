"""The HTTP grammar the package needs, written once: tokens, origins, default ports and `Vary`.

Origins are checked as browsers serialize them (`scheme://host[:port]`), once at construction.
(The path the routes see, without `root_path`, is `_starlette_routing.route_path`.)
"""

from __future__ import annotations

import re
from collections.abc import Collection

# RFC 6454 section 6.2: scheme "://" host [ ":" port ], in lower case, with no path, no trailing
# slash and no user info. Browsers compare origins as strings (Fetch's CORS check and Resource
# Timing's Timing-Allow-Origin check both do), so any other spelling silently never matches.
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(?P<port>[0-9]+))?")
# The longest origin taken: scheme "://" host ":" port, where a DNS name has at most 253 characters
# (RFC 1035 section 2.3.4, 254 with the root's '.') and a port at most 5 digits, so no page a
# browser can load has a longer one. Anything longer is not an origin, whatever it holds: values
# from a request (a reflected Origin header) are refused before they are parsed any further.
MAX_ORIGIN_LENGTH = 300
# A DNS label (RFC 1123 section 2.1): letters, digits and '-', not at either end. A host may end in
# one '.' (the root), which browsers keep in the origin.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# The URL standard drops a scheme's default port, so an origin never carries it
# (https://url.spec.whatwg.org/#default-port).
DEFAULT_PORTS = {"http": "80", "https": "443"}

# RFC 9110 section 5.6.2: a token's characters (tchar), the syntax of methods, header names and
# Server-Timing metric names.
TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN = re.compile(f"[{TCHAR}]+")


def _problem(value: str) -> str | None:
    """Why `value` is not an origin a browser sends, or None if it is one."""
    if len(value) > MAX_ORIGIN_LENGTH:
        return "length"
    match = _ORIGIN.fullmatch(value)
    if match is None:
        return "form"
    scheme, host, port = match.group("scheme", "host", "port")
    if not host.startswith("["):
        labels = host.removesuffix(".").split(".")
        if not all(labels):
            return "empty label"
        if not all(map(_LABEL.fullmatch, labels)):  # (the host has only letters, digits, '.' and '-')
            return "hyphen"
    if port is not None:
        # (int() only of 5 digits at most: Python refuses to convert a string of thousands.)
        if port.startswith("0") or len(port) > 5 or int(port) > 65535:
            return "port"
        if DEFAULT_PORTS.get(scheme) == port:
            return "default port"
    return None


def is_origin(value: str) -> bool:
    """Whether `value` is an origin exactly as a browser would send it in an `Origin` header."""
    return _problem(value) is None


def _without_default_port(value: str) -> str:
    scheme, _, rest = value.partition("://")
    return f"{scheme}://{rest.rpartition(':')[0]}"


# Letters that IDNA 2003 (Python's "idna" codec) maps to others where browsers (UTS 46, nontransitional)
# keep them, so the codec's answer would not be the browser's: sharp s, final sigma, ZWNJ, ZWJ.
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


def ascii_spelling(host: str) -> str | None:
    """`host` (with a port or not) with its letters beyond ASCII in IDNA (punycode) form, as browsers
    and HTTP clients send it; None where Python's codec fails or may not agree with browsers."""
    if _DEVIATIONS.intersection(host):
        return None
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def check_origin(value: object, option: str) -> str:
    """`value` if it is a serialized origin; otherwise a ValueError or TypeError that says the fix."""
    if not isinstance(value, str):
        raise TypeError(
            f"{option} origin {value!r} has type {type(value).__name__}; write it as a string such as "
            "'https://app.example.com'."
        )
    problem = _problem(value)
    if problem is None:
        return value
    fixed = value.strip()
    if fixed == "null":
        # Sandboxed iframes, file: pages and cross-origin redirects all send "Origin: null", so any
        # site can make a request look like it: allowing it allows everyone.
        hint = "any page can send 'null' (from a sandboxed iframe, say), so allowing it allows every site; leave it out"
    elif "://" not in fixed:
        hint = f"add the scheme, as in 'https://{fixed.strip('/')}'"
    elif problem == "length":
        hint = (
            f"it has {len(value)} characters, and an origin has at most {MAX_ORIGIN_LENGTH} (a host name has "
            "at most 253); give the scheme and host only, as in 'https://app.example.com'"
        )
    elif problem == "default port":
        scheme, port = value.partition(":")[0], value.rpartition(":")[2]
        hint = f"browsers leave out the default port {port} of {scheme}, so write {_without_default_port(value)!r}"
    elif problem == "port":
        hint = "a port is a number from 1 to 65535 with no leading zeros, as in 'http://localhost:3000'"
    elif problem in ("empty label", "hyphen"):
        hint = (
            "each part of the host between dots is letters, digits and '-', where no part is empty and none "
            "starts or ends with '-', as in 'https://app.example.com'"
        )
    else:
        scheme, _, rest = fixed.partition("://")
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        suggestion = f"{scheme.lower()}://{authority.lower()}"
        if _problem(suggestion) == "default port":
            suggestion = _without_default_port(suggestion)
        if is_origin(suggestion):
            hint = (
                f"browsers send origins as scheme://host[:port] in lower case, with no path or trailing slash, "
                f"so write {suggestion!r}"
            )
        elif not suggestion.isascii():
            hint = "browsers send a host with letters beyond ASCII in its IDNA (punycode) form"
            spelled = ascii_spelling(suggestion.partition("://")[2])
            if spelled is not None and is_origin(f"{scheme.lower()}://{spelled}"):
                hint += f", so write '{scheme.lower()}://{spelled}'"
        else:
            hint = "write it as scheme://host[:port], as in 'https://app.example.com' or 'http://localhost:3000'"
    raise ValueError(f"{option} origin {value!r} is not an origin a browser would send; {hint}.")


def has_any(headers: list[tuple[bytes, bytes]], names: Collection[bytes]) -> bool:
    """Whether one of `headers` is named one of `names` (given in lower case), in any case.

    Called on every response start: a plain loop, which costs less here than building a set or a
    dict of the names would. A name with no upper-case letter (as ASGI asks, and as Starlette's
    responses send them) is looked up as it is; only the others are lowered first, into a copy.
    """
    for name, _ in headers:
        if name in names or (not name.islower() and name.lower() in names):
            return True
    return False


def merge_vary(headers: list[tuple[bytes, bytes]], add: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """`headers` with one `Vary` holding every item once (and `add`, if given), where the first was.

    Starlette's CORS appends "Origin" to whatever Vary the app sent, even "Origin"; the list is
    returned as it was when nothing needs merging, the common case.
    """
    places = [index for index, (name, _) in enumerate(headers) if name.lower() == b"vary"]
    items: dict[bytes, bytes] = {}  # lower case -> as written, in order
    for index in places:
        for item in headers[index][1].split(b","):
            if item.strip():
                items.setdefault(item.strip().lower(), item.strip())
    if add is not None:
        items.setdefault(add.lower(), add)
    count = sum(len([item for item in headers[index][1].split(b",") if item.strip()]) for index in places)
    if len(places) == 1 and count == len(items):
        return headers
    if not places:
        return [*headers, (b"vary", b", ".join(items.values()))] if items else headers
    merged = (headers[places[0]][0], b", ".join(items.values()))
    drop = set(places[1:])
    return [merged if index == places[0] else header for index, header in enumerate(headers) if index not in drop]
