"""`CORSMiddleware`: Starlette's CORS, with presets, checks, and its headers on every response.

Starlette's `CORSMiddleware` answers preflights and edits responses; this one holds one built
with the checked settings and adds what it lacks: presets, refusals at construction, the CORS
headers on the 500 that Starlette renders, the timing headers exposed, policies per path.
Fetch's CORS protocol: https://fetch.spec.whatwg.org/#http-cors-protocol
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Mapping
from typing import Any, NamedTuple, Unpack

from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._cors.origin_automaton import Automaton, build
from starlette_mw._cors.policy import CORSOptions, CORSPolicy, check_options
from starlette_mw._engine.plain import PlainMiddleware
from starlette_mw._http import MAX_ORIGIN_LENGTH, has_any, merge_vary
from starlette_mw._paths import Matcher, PathPattern, PathPatterns, compile_patterns, route_path
from starlette_mw._request_record import (
    EXPOSURE_HEADERS,
    Headers,
    RequestRecord,
    allow_origin,
    record_of,
    wrap_error_response,
)

__all__ = ["CORSMiddleware", "CORSPolicy"]


_ACAO = b"access-control-allow-origin"


class Changes(NamedTuple):
    """The edits for a response: names to drop, headers to add, the Access-Control-Allow-Origin among them."""

    dropped: frozenset[bytes]
    added: tuple[tuple[bytes, bytes], ...]
    origin: bytes | None
    # What `_cors_headers` looks for in the response's own headers: if none is there (the usual
    # case), the edit is only additions. And whether `added` names headers to expose itself.
    looked_for: frozenset[bytes]
    exposes: bool


def _changes(dropped: frozenset[bytes], added: tuple[tuple[bytes, bytes], ...], origin: bytes | None) -> Changes:
    exposes = any(name in EXPOSURE_HEADERS for name, _ in added)
    return Changes(dropped, added, origin, dropped | EXPOSURE_HEADERS | {b"vary"}, exposes)


_NO_EDIT = _changes(frozenset(), (), None)


class _StarletteCORS(StarletteCORSMiddleware):
    r"""Starlette's `CORSMiddleware`, with `allow_origin_regex` decided on the automaton that the
    construction-time check reads, in time linear in the Origin, rather than by `re`.

    `re` backtracks: an accepted pattern such as r'^https://(a+)+\.example\.com$' takes time
    exponential in the length of an Origin such as 'https://aaa…a', on the event loop, so one
    request of a few dozen characters would stall the server (issue 15's follow-up). The two agree on
    every origin a browser can send (tests/fuzz/test_properties.py holds them to it); a value that is
    not one (upper case, a path, over 300 characters) is not allowed by the pattern.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(app, **options)
        pattern: str | None = options.get("allow_origin_regex")
        self.origin_automaton: Automaton | None = None if pattern is None else build(pattern)

    def is_allowed_origin(self, origin: str) -> bool:
        if self.allow_all_origins or origin in self.allow_origins:
            return True
        automaton = self.origin_automaton
        return automaton is not None and len(origin) <= MAX_ORIGIN_LENGTH and automaton.fullmatches(origin)


class _Policy:
    """One Starlette `CORSMiddleware`, and its answer to a request that is not a preflight.

    Starlette decides (its settings, `simple_headers`, `is_allowed_origin`) and answers preflights
    itself; its `send` then edits the response start through `MutableHeaders`, one scan of the
    headers per edit. `edit()` gives the same edits, made in one pass by `_cors_headers`;
    a property test (`tests/fuzz/test_properties.py`) holds the two to the same headers for any response.
    """

    __slots__ = ("any_origin", "cors", "explicit", "named", "refused", "simple", "simple_names", "with_origin")

    def __init__(self, cors: _StarletteCORS) -> None:
        self.cors = cors
        self.simple = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in cors.simple_headers.items()
        )
        self.simple_names = frozenset(name for name, _ in self.simple)
        # For an origin answered by name: the others, then the origin (in place of "*", with credentials).
        self.explicit = tuple(header for header in self.simple if header[0] != _ACAO)
        self.with_origin = self.simple_names | {_ACAO}
        self.any_origin = _changes(self.simple_names, self.simple, b"*")
        self.refused = _changes(self.simple_names, self.simple, None)
        # The answers for the origins the settings name, worked out once: most requests come from one.
        self.named: dict[bytes | None, Changes] = {
            origin: self.decide(origin) for origin in (o.encode("latin-1") for o in cors.allow_origins)
        }

    def edit(self, origin: bytes | None) -> Changes:
        """What Starlette's `send` sets on the response to a request with this Origin (and Vary: Origin)."""
        if origin is None:
            return _NO_EDIT
        return self.named.get(origin) or self.decide(origin)

    def decide(self, origin: bytes) -> Changes:
        cors = self.cors
        if cors.allow_all_origins and not cors.allow_credentials:
            return self.any_origin
        if cors.allow_all_origins or cors.is_allowed_origin(origin.decode("latin-1")):
            return _changes(self.with_origin, (*self.explicit, (_ACAO, origin)), origin)
        return self.refused


def _cors_headers(changes: Changes, vary: bool, record: RequestRecord, headers: Headers) -> Headers:
    """A response start's `headers` with the `changes`, `Vary: Origin` if `vary` (Starlette's
    preflight responses carry their own), and the announced headers exposed (see `_request_record.py`)."""
    if has_any(headers, changes.looked_for):
        return _merged(changes, vary, record, headers)
    headers += changes.added
    if vary:
        headers.append((b"vary", b"Origin"))
    if record.exposed and changes.origin is not None:
        allow_origin(record, headers, changes.origin, known_absent=not changes.exposes)
    return headers


def _merged(changes: Changes, vary: bool, record: RequestRecord, headers: Headers) -> Headers:
    """`_cors_headers` for a response that has headers of its own that the edit replaces or merges with."""
    dropped, added, origin, _, _ = changes
    if has_any(headers, dropped):
        headers = [(name, value) for name, value in headers if name.lower() not in dropped]
    had_vary = has_any(headers, (b"vary",))
    headers += added  # (never a Vary)
    if had_vary:
        # One Vary with each item once: Starlette's own appends "Origin" even when the app's had it.
        headers = merge_vary(headers, b"Origin" if vary else None)
    elif vary:
        headers.append((b"vary", b"Origin"))
    if record.exposed:  # a layer (TimingMiddleware) announced headers to expose
        if origin is None:  # the app's own, kept for an origin not allowed
            origin = next((value for name, value in headers if name.lower() == _ACAO), None)
        if origin is not None:  # expose them to that origin; see `_request_record.py`
            allow_origin(record, headers, origin)
    return headers


def _origin(scope: Scope) -> tuple[bytes | None, bool]:
    """The request's Origin (the first, as Starlette reads it), and whether it asks a preflight."""
    origin = None
    preflight = False
    for name, value in scope["headers"]:
        if name == b"origin":
            if origin is None:
                origin = value
        elif name == b"access-control-request-method":
            preflight = True
    return origin, preflight and origin is not None and scope["method"] == "OPTIONS"


class CORSMiddleware(PlainMiddleware):
    """Starlette's `CORSMiddleware`, same keywords, plus `preset=`, checks and headers on every response.

        app.add_middleware(CORSMiddleware, preset="first-party", allow_origins=["https://app.example.com"])
        app.add_middleware(CORSMiddleware, preset="public")  # any site may read, without cookies

    Presets (the docs' CORS page has the table): "development" (any port of localhost, 127.0.0.1 and [::1],
    with credentials; never in production), "public" (any origin, no credentials, GET and HEAD),
    "first-party" (the origins you name, credentials, the usual methods and headers) and "strict"
    (the origins you name, no credentials, GET and HEAD). A keyword given replaces the preset's
    value; without a preset, Starlette's defaults apply.

    Refused at construction, with the fix: credentials with origin "*", an origin that is not
    `scheme://host[:port]` (or `scheme://*.domain` over a registrable domain), an
    `allow_origin_regex` that is not anchored (`^...$`), matches `null`, or matches an origin whose
    registrable domain it does not spell out literally, a preset for named origins without any.

    What Starlette's own does not: the CORS headers and `Vary: Origin` on the 500 Starlette renders
    when an endpoint raises (in an app made with `starlette_mw.App` or passed to
    `starlette_mw.install()`), and `TimingMiddleware`'s headers in `Access-Control-Expose-Headers`
    with `Timing-Allow-Origin` for allowed origins (when it sends Server-Timing), in either order in
    the stack.

    `policies=` gives a `CORSPolicy` per path pattern instead (the first pattern that matches
    wins; a path that matches none passes through untouched):

        app.add_middleware(CORSMiddleware, policies={
            "/public/*": CORSPolicy.from_preset("public"),
            "/api/*": CORSPolicy.from_preset("first-party", allow_origins=["https://app.example.com"]),
        })

    `include=` / `exclude=` limit the middleware to some paths, as for the package's others.
    """

    order_role = "cors"

    def __init__(
        self,
        app: ASGIApp,
        *,
        preset: str | None = None,
        policies: Mapping[PathPattern, CORSPolicy] | None = None,
        include: PathPatterns = None,
        exclude: PathPatterns = None,
        **options: Unpack[CORSOptions],
    ) -> None:
        super().__init__(app, include=include, exclude=exclude)
        check_options(options, "CORSMiddleware")
        self.policy: CORSPolicy | None = None
        self.policies: dict[PathPattern, CORSPolicy] | None = None
        self._policy: _Policy | None = None
        self._routes: tuple[tuple[tuple[Matcher, ...], _Policy], ...] = ()
        if policies is None:
            self.policy = CORSPolicy(**options) if preset is None else CORSPolicy.from_preset(preset, **options)
            self._policy = _Policy(_StarletteCORS(app, **self.policy.options()))
            return
        if preset is not None or options:
            given = ", ".join(["preset", *options] if preset is not None else options)
            raise TypeError(
                f"CORSMiddleware got policies= and also {given}; give each path its settings in policies, "
                "with a last entry for '/*' (CORSPolicy.from_preset(...)) for the paths the others leave."
            )
        if not isinstance(policies, Mapping) or not policies:
            raise ValueError(
                f"policies={policies!r} must map path patterns to policies, as in "
                "policies={'/api/*': CORSPolicy.from_preset('first-party', allow_origins=[...])}."
            )
        routes = []
        for pattern, policy in policies.items():
            if not isinstance(policy, CORSPolicy):
                raise TypeError(
                    f"policies[{pattern!r}] is {policy!r}; make it with CORSPolicy.from_preset('public') or "
                    "CORSPolicy(allow_origins=[...])."
                )
            matchers = compile_patterns(pattern, "policies")
            if matchers is None:
                raise TypeError(f"policies key {pattern!r} is not a path pattern; use one such as '/api/*'.")
            routes.append((matchers, _Policy(_StarletteCORS(app, **policy.options()))))
        self.policies = dict(policies)
        self._routes = tuple(routes)

    def _select(self, scope: Scope) -> _Policy | None:
        path = route_path(scope)
        for matchers, policy in self._routes:
            if any(match(path) for match in matchers):
                return policy
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, checked: bool = False) -> None:
        if not (checked or self.direct) or scope["type"] != "http":
            return await self.pass_on(scope, receive, send)
        policy = self._policy or self._select(scope)
        if policy is None:  # no policy for this path
            await self.app(scope, receive, send)
            return
        origin, preflight = _origin(scope)
        app: ASGIApp
        if preflight:  # Starlette's CORSMiddleware answers it, as it makes it
            app, edit = policy.cors, _NO_EDIT
        else:
            app, edit = self.app, policy.named.get(origin) or policy.edit(origin)  # (the usual origin, without a call)
        vary = not preflight
        record = record_of(scope)  # (a timing layer inside announces its headers in it)
        started = False

        def send_cors(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if record.error_edits:  # registered for an earlier error
                    record.error_edits.pop(self, None)
                # (the start is the app's to send once, as Starlette's middleware assume: edited in place)
                message["headers"] = _cors_headers(edit, vary, record, list(message.get("headers", ())))
            return send(message)

        try:
            await app(scope, receive, send_cors)
        except BaseException as exc:  # cancelled too: a dispatch outside that fails after call_next cancels the app
            on_error = functools.partial(_cors_headers, edit, True, record)
            wrap_error_response(scope, on_error, self, warn=isinstance(exc, Exception) and not started)
            raise
