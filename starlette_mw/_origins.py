"""Origins as browsers serialize them (`scheme://host[:port]`), checked once at construction."""

from __future__ import annotations

import re

# RFC 6454 section 6.2: scheme "://" host [ ":" port ], in lower case, with no path, no trailing
# slash and no user info. Browsers compare origins as strings (Fetch's CORS check and Resource
# Timing's Timing-Allow-Origin check both do), so any other spelling silently never matches.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?")


def is_origin(value: str) -> bool:
    """Whether `value` is an origin exactly as a browser would send it in an `Origin` header."""
    return _ORIGIN.fullmatch(value) is not None


def check_origin(value: object, option: str) -> str:
    """`value` if it is a serialized origin; otherwise a ValueError or TypeError that says the fix."""
    if not isinstance(value, str):
        raise TypeError(
            f"{option} origin {value!r} has type {type(value).__name__}; write it as a string such as "
            "'https://app.example.com'."
        )
    if is_origin(value):
        return value
    fixed = value.strip()
    if fixed == "null":
        # Sandboxed iframes, file: pages and cross-origin redirects all send "Origin: null", so any
        # site can make a request look like it: allowing it allows everyone.
        hint = "any page can send 'null' (from a sandboxed iframe, say), so allowing it allows every site; leave it out"
    elif "://" not in fixed:
        hint = f"add the scheme, as in 'https://{fixed.strip('/')}'"
    else:
        scheme, _, rest = fixed.partition("://")
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        suggestion = f"{scheme.lower()}://{authority.lower()}"
        if is_origin(suggestion):
            hint = (
                f"browsers send origins as scheme://host[:port] in lower case, with no path or trailing slash, "
                f"so write {suggestion!r}"
            )
        else:
            hint = "write it as scheme://host[:port], as in 'https://app.example.com' or 'http://localhost:3000'"
    raise ValueError(f"{option} origin {value!r} is not an origin a browser would send; {hint}.")
