"""`CORSMiddleware`: Starlette's CORS, with presets, checks, and its headers on every response.

Starlette's `CORSMiddleware` answers preflights and edits responses; this one holds one built
with the checked settings and adds what it lacks: presets, refusals at construction, the CORS
headers on the 500 that Starlette renders, the timing headers exposed, policies per path.
Fetch's CORS protocol: https://fetch.spec.whatwg.org/#http-cors-protocol
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Unpack

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._cors_policy import CORSOptions, CORSPolicy, check_options
from starlette_mw._cors_timing import merge_vary
from starlette_mw._metrics import SCOPE_KEY as METRICS_KEY
from starlette_mw._metrics import RequestMetrics
from starlette_mw._plain import PlainMiddleware
from starlette_mw.errors import response_started, wrap_error_response
from starlette_mw.paths import PathPattern, PathPatterns, compile_patterns, route_path

__all__ = ["CORSMiddleware", "CORSPolicy"]


class _CORSSend:
    """The `send` after Starlette's CORS logic: one request's response start, on its way out."""

    __slots__ = ("owner", "scope", "send", "started")

    def __init__(self, owner: CORSMiddleware, scope: Scope, send: Send) -> None:
        self.owner = owner
        self.scope = scope
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            response_started(self.scope, self.owner)
            metrics: RequestMetrics | None = self.scope.get(METRICS_KEY)
            if metrics is not None:
                message = _share_with_timing(message, metrics)
            message = _vary_once(message)
        await self.send(message)


def _vary_once(message: Message) -> Message:
    """Starlette's CORS appends "Origin" to the one Vary it leaves, even when the app's had it."""
    headers = message["headers"]  # Starlette's CORS has made it a list of lower-case names
    for name, value in reversed(headers):
        if name == b"vary":
            if value.lower().count(b"origin") > 1:
                return {**message, "headers": merge_vary(headers)}
            break
    return message


def _share_with_timing(message: Message, metrics: RequestMetrics) -> Message:
    """Expose the timing headers to the origin the response allows; see `_cors_timing`."""
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
    origin = next((value for name, value in headers if name.lower() == b"access-control-allow-origin"), None)
    if origin is None:  # the origin is not allowed (or the request had none)
        return message
    if not metrics.share_with_cors(headers, origin):  # a TimingMiddleware outside this one exposes them
        return message
    return {**message, "headers": headers}


class CORSMiddleware(PlainMiddleware):
    """Starlette's `CORSMiddleware`, same keywords, plus `preset=`, checks and headers on every response.

        app.add_middleware(CORSMiddleware, preset="first-party", allow_origins=["https://app.example.com"])
        app.add_middleware(CORSMiddleware, preset="public")  # any site may read, without cookies

    Presets (the README has the table): "development" (any port of localhost, 127.0.0.1 and [::1],
    with credentials; never in production), "public" (any origin, no credentials, GET and HEAD),
    "first-party" (the origins you name, credentials, the usual methods and headers) and "strict"
    (the origins you name, no credentials, GET and HEAD). A keyword given replaces the preset's
    value; without a preset, Starlette's defaults apply.

    Refused at construction, with the fix: credentials with origin "*", an origin that is not
    `scheme://host[:port]`, an `allow_origin_regex` that is not anchored (`^...$`) or matches an
    origin of another site (any origin, `null`, a look-alike through an unescaped '.' or an open
    end), a preset for named origins without any.

    What Starlette's own does not: the CORS headers and `Vary: Origin` on the 500 Starlette renders
    when an endpoint raises (in an app made with `starlette_mw.App` or passed to
    `starlette_mw.install()`), and `TimingMiddleware`'s headers in `Access-Control-Expose-Headers`
    with `Timing-Allow-Origin` for allowed origins, in either order in the stack.

    `policies=` gives a `CORSPolicy` per path pattern instead (the first pattern that matches
    wins; a path that matches none passes through untouched):

        app.add_middleware(CORSMiddleware, policies={
            "/public/*": CORSPolicy.from_preset("public"),
            "/api/*": CORSPolicy.from_preset("first-party", allow_origins=["https://app.example.com"]),
        })

    `include=` / `exclude=` limit the middleware to some paths, as for the package's others.
    """

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
        self._cors: StarletteCORSMiddleware | None = None
        self._routes: tuple[tuple[tuple[re.Pattern[str], ...], StarletteCORSMiddleware], ...] = ()
        if policies is None:
            self.policy = CORSPolicy(**options) if preset is None else CORSPolicy.from_preset(preset, **options)
            self._cors = StarletteCORSMiddleware(app, **self.policy.options())
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
            regexes = compile_patterns(pattern, "policies")
            if regexes is None:
                raise TypeError(f"policies key {pattern!r} is not a path pattern; use one such as '/api/*'.")
            routes.append((regexes, StarletteCORSMiddleware(app, **policy.options())))
        self.policies = dict(policies)
        self._routes = tuple(routes)

    def _select(self, scope: Scope) -> StarletteCORSMiddleware | None:
        path = route_path(scope)
        for regexes, cors in self._routes:
            if any(regex.fullmatch(path) for regex in regexes):
                return cors
        return None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        cors = self._cors or self._select(scope)
        if cors is None:  # no policy for this path
            await self.app(scope, receive, send)
            return
        response = _CORSSend(self, scope, send)
        try:
            # Starlette's logic: preflights answered, and the response start edited on its way out.
            await cors(scope, receive, response)
        except BaseException as exc:  # cancelled too: a dispatch outside that fails after call_next cancels the app
            wrap = functools.partial(self._wrap_error_response, cors, scope)
            wrap_error_response(scope, wrap, self, warn=isinstance(exc, Exception) and not response.started)
            raise

    def _wrap_error_response(self, cors: StarletteCORSMiddleware, scope: Scope, send: Send) -> Send:
        # The same edits as for the app's own response: Starlette's `send`, then ours.
        return functools.partial(cors.send, send=_CORSSend(self, scope, send), request_headers=Headers(scope=scope))
