"""`CORSPolicy`: the settings of Starlette's CORSMiddleware, presets for them, and their checks.

Every check runs once, when the policy is made, and refuses what silently fails or leaks in a
browser: the messages say what to write instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict, Unpack

from starlette.middleware.cors import ALL_METHODS

from starlette_mw._cors.origin_regex import check_origin_regex, subdomains_pattern
from starlette_mw._http import TOKEN, check_origin

__all__ = ["PRESETS", "CORSOptions", "CORSPolicy", "check_options"]


class CORSOptions(TypedDict, total=False):
    """The keywords of Starlette's `CORSMiddleware`, each optional: the ones given override a preset."""

    allow_origins: Collection[str]
    allow_methods: Collection[str]
    allow_headers: Collection[str]
    allow_credentials: bool
    allow_origin_regex: str | None
    allow_private_network: bool
    expose_headers: Collection[str]
    max_age: int


# Which origins a browser on this machine uses during development: any port, http or https.
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$"

# The presets of the README's table. Methods and headers beyond Starlette's safelisted request
# headers (Accept, Accept-Language, Content-Language, Content-Type), which it always allows.
PRESETS: dict[str, CORSOptions] = {
    # Never in production: any page served from this machine may call the app with the user's
    # cookies. Max-Age 0, so a changed setting applies at the next request.
    "development": CORSOptions(
        allow_origin_regex=LOCAL_ORIGINS,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        max_age=0,
    ),
    # An open read-only API: any site may read it, without cookies. Any request header, as a page
    # can only send its own (an API key, say) and a server could send the same request anyway.
    "public": CORSOptions(
        allow_origins=["*"],
        allow_credentials=False,
        allow_methods=["GET", "HEAD"],
        allow_headers=["*"],
        max_age=3600,
    ),
    # The app's own front ends, signed in with cookies or a token.
    "first-party": CORSOptions(
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Requested-With"],
        max_age=600,
    ),
    # Named origins may read, nothing more: no cookies, no methods that change things, no custom headers.
    "strict": CORSOptions(
        allow_credentials=False,
        allow_methods=["GET", "HEAD"],
        allow_headers=[],
        max_age=600,
    ),
}
# The presets that are about known front ends: they need the origins of those.
_NEEDS_ORIGINS = frozenset({"first-party", "strict"})

_OPTION_NAMES = tuple(CORSOptions.__annotations__)


def check_options(options: Mapping[str, object], who: str) -> None:
    """A TypeError naming the closest keyword when `options` holds one Starlette's CORSMiddleware lacks."""
    for name in options:
        if name not in _OPTION_NAMES:
            close = difflib.get_close_matches(name, _OPTION_NAMES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the keywords are {', '.join(_OPTION_NAMES)}."
            raise TypeError(f"{who} got an unknown keyword {name!r}; {hint}")


def _strings(value: object, option: str, example: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise TypeError(
            f"{option}={value!r} must be a list of strings, not {type(value).__name__}; write {option}=[{example}]."
        )
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{option} holds {item!r} of type {type(item).__name__}; use strings such as {example}.")
    return items


def _check_origins(origins: tuple[str, ...], credentials: bool) -> None:
    for origin in origins:
        if origin == "*":
            if credentials:
                raise ValueError(
                    "allow_origins=['*'] with allow_credentials=True would let every website read the responses "
                    "of a signed-in user; list the origins of your front ends, as in "
                    "allow_origins=['https://app.example.com'], or set allow_credentials=False."
                )
        elif "*" in origin:
            _check_subdomains(origin)
        else:
            check_origin(origin, "allow_origins")


def _check_subdomains(origin: str) -> None:
    """'https://*.example.com': any subdomain of a registrable domain, checked as its regex is."""
    pattern = subdomains_pattern(origin)
    if pattern is None:
        raise ValueError(
            f"allow_origins origin {origin!r} has a '*' that is not the first label of the host; write "
            "'https://*.example.com' for the subdomains of a site (one or more labels before the domain)."
        )
    try:  # the rest as any origin: lower case, no path, no default port
        check_origin(origin.replace("://*.", "://a.", 1), "allow_origins")
    except ValueError as error:
        raise ValueError(str(error).replace("://a.", "://*.")) from None
    try:
        check_origin_regex(pattern, re.compile(pattern))
    except ValueError as error:
        witness = str(error).partition(" matches ")[2].partition(",")[0]
        raise ValueError(
            f"allow_origins origin {origin!r} lets in other sites: it matches {witness}, and anyone can register a "
            "name there, since the part after '*.' is a public suffix (by the Public Suffix List) rather than a "
            "registrable domain; name your site's own domain, as in 'https://*.example.com'."
        ) from None


def subdomain_patterns(origins: Collection[str]) -> list[str]:
    """The regexes of the 'scheme://*.domain' entries of `origins`."""
    return [pattern for origin in origins if "*" in origin and (pattern := subdomains_pattern(origin)) is not None]


def _check_regex(pattern: object) -> None:
    if not isinstance(pattern, str):
        raise TypeError(
            f"allow_origin_regex={pattern!r} has type {type(pattern).__name__}; write the pattern as a string, "
            r"as in r'^https://[a-z0-9-]+\.example\.com$'."
        )
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"allow_origin_regex={pattern!r} is not a valid regular expression: {error}.") from None
    check_origin_regex(pattern, regex)


def _check_methods(methods: tuple[str, ...]) -> None:
    for method in methods:
        if method == "*":
            continue
        if not TOKEN.fullmatch(method):
            raise ValueError(f"allow_methods method {method!r} is not an HTTP method; write one such as 'PUT'.")
        if method != method.upper() and method.upper() in ALL_METHODS:
            # Browsers send the standard methods in upper case, and Starlette compares them exactly.
            raise ValueError(
                f"allow_methods method {method!r} never matches what browsers send; write {method.upper()!r}."
            )


def _check_headers(headers: tuple[str, ...], option: str) -> None:
    for header in headers:
        if header != "*" and not TOKEN.fullmatch(header):
            raise ValueError(
                f"{option} header {header!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~, no spaces "
                "or commas); give each name as its own string, as in ['X-Request-Id', 'X-Total-Count']."
            )


@dataclass(frozen=True, kw_only=True)
class CORSPolicy:
    """What Starlette's `CORSMiddleware` is given, checked: its keywords, with its defaults.

    Made from a preset with `CORSPolicy.from_preset`, or directly; used for `policies=` of
    `CORSMiddleware`. Collections are kept as tuples.

        api = CORSPolicy.from_preset("first-party", allow_origins=["https://app.example.com"])
        api.allow_credentials  # True
    """

    allow_origins: Collection[str] = ()
    allow_methods: Collection[str] = ("GET",)
    allow_headers: Collection[str] = ()
    allow_credentials: bool = False
    allow_origin_regex: str | None = None
    allow_private_network: bool = False
    expose_headers: Collection[str] = ()
    max_age: int = 600

    def __post_init__(self) -> None:
        origins = _strings(self.allow_origins, "allow_origins", "'https://app.example.com'")
        methods = _strings(self.allow_methods, "allow_methods", "'GET', 'POST'")
        headers = _strings(self.allow_headers, "allow_headers", "'Authorization'")
        exposed = _strings(self.expose_headers, "expose_headers", "'X-Request-Id'")
        for option in ("allow_credentials", "allow_private_network"):
            if not isinstance(getattr(self, option), bool):
                raise TypeError(f"{option}={getattr(self, option)!r} must be True or False.")
        if isinstance(self.max_age, bool) or not isinstance(self.max_age, int) or self.max_age < 0:
            raise ValueError(f"max_age={self.max_age!r} must be a whole number of seconds, 0 or more (600 is usual).")
        _check_origins(origins, self.allow_credentials)
        if self.allow_origin_regex is not None:
            _check_regex(self.allow_origin_regex)
        _check_methods(methods)
        _check_headers(headers, "allow_headers")
        _check_headers(exposed, "expose_headers")
        if "*" in exposed and self.allow_credentials:
            # Fetch: with credentials, '*' is the header name '*', not a wildcard, so nothing is exposed.
            raise ValueError(
                "expose_headers=['*'] exposes no header to requests with credentials, and this policy allows them; "
                "list the headers the page reads, as in expose_headers=['X-Request-Id']."
            )
        for name, value in (
            ("allow_origins", origins),
            ("allow_methods", methods),
            ("allow_headers", headers),
            ("expose_headers", exposed),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def from_preset(cls, preset: str, /, **options: Unpack[CORSOptions]) -> CORSPolicy:
        """The preset's settings, with each keyword given replacing the preset's value for it.

        Takes the keywords of Starlette's `CORSMiddleware` (see `CORSOptions`).
        """
        check_options(options, "CORSPolicy.from_preset()")
        if preset not in PRESETS:
            close = difflib.get_close_matches(str(preset), PRESETS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(map(repr, PRESETS))}."
            raise ValueError(f"CORS preset {preset!r} does not exist; {hint}")
        merged: dict[str, Any] = {**PRESETS[preset], **options}
        if preset in _NEEDS_ORIGINS:
            origins = merged.get("allow_origins", ())
            if not origins and merged.get("allow_origin_regex") is None:
                raise ValueError(
                    f"CORS preset {preset!r} is for known front ends and allows no origin by itself; pass their "
                    "origins, as in allow_origins=['https://app.example.com'] (or allow_origin_regex=...)."
                )
            if not isinstance(origins, str) and "*" in origins:
                raise ValueError(
                    f"CORS preset {preset!r} is for named origins, and allow_origins holds '*'; list the origins, "
                    "or use preset='public' for an API that any site may read."
                )
        return cls(**merged)

    def options(self) -> dict[str, Any]:
        """The policy as keywords for Starlette's `CORSMiddleware`.

        Starlette compares `allow_origins` literally, so the 'https://*.example.com' entries go into
        `allow_origin_regex` instead, as alternatives next to the policy's own pattern.
        """
        options = {field.name: getattr(self, field.name) for field in fields(self)}
        patterns = subdomain_patterns(self.allow_origins)
        if patterns:
            options["allow_origins"] = tuple(
                origin for origin in self.allow_origins if origin == "*" or "*" not in origin
            )
            joined = "|".join(patterns)
            if self.allow_origin_regex is not None:
                # '|' binds loosest, so fullmatch of "A|B" is fullmatch of A or of B, with A's flags as they were.
                # Under (?x) a '#' in A comments out the rest of its line: B goes on the next.
                verbose = re.compile(self.allow_origin_regex).flags & re.VERBOSE
                joined = self.allow_origin_regex + ("\n|" if verbose else "|") + joined
            options["allow_origin_regex"] = joined
        return options
