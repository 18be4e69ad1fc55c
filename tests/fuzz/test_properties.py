"""Property-based tests: redirect rules and CORS decisions against small reference models.

Each model is a plain loop or a few comparisons written from the README, not from the code; the
middleware answers through a real ASGI call. Examples per test come from the hypothesis profile
(tests/conftest.py): a short run by default, `--hypothesis-profile=long` for many more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from peer import call_asgi
from redirect_calls import call
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw import CORSMiddleware, Redirect, RedirectMiddleware, TimingMiddleware
from starlette_mw._http import has_any

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Pure decisions, no concurrency: one backend is enough here (tests/fuzz/test_fuzz.py runs both)."""
    return "asyncio"


async def reached_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"app"})


# -- Redirect rules ------------------------------------------------------------------------------------

# Few distinct segments, so that sources and request paths often collide; some need percent-encoding.
SEGMENTS = ["a", "b", "c", "7", "007", "x y", "é", "%41", "?", "\\", "~"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]
NAMED = {"permanent": (301, 308), "temporary": (302, 307)}


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the model sees it; `rule()` writes it as a `Redirect`."""

    exact: bool
    source: str
    # The target's path as pieces: ("text", literal) or ("group", name); None for 410 Gone.
    path: tuple[tuple[str, str], ...] | None
    # The target's query: (key, literal value) or (key, None, param name, default or None).
    query_parts: tuple[tuple[str, str | None, str, str | None], ...]
    status: Any
    query: Literal["keep", "drop", "merge"]
    methods: frozenset[str] | None

    def target(self) -> str | None:
        if self.path is None:
            return None
        text = "".join(value if kind == "text" else "{" + value + "}" for kind, value in self.path)
        pairs = []
        for key, literal, param, default in self.query_parts:
            if literal is not None:
                pairs.append(f"{key}={literal}")
            else:
                pairs.append(f"{key}={{?{param}" + ("" if default is None else f"={default}") + "}")
        return text + ("?" + "&".join(pairs) if pairs else "")

    def rule(self) -> Redirect:
        status = 410 if self.path is None else self.status
        return Redirect(self.source, self.target(), status=status, query=self.query, methods=self.methods)


@st.composite
def literal_paths(draw: st.DrawFn, segments: list[str] = SEGMENTS, max_size: int = 3) -> str:
    chosen = draw(st.lists(st.sampled_from(segments), max_size=max_size))
    return "/" + "/".join(chosen) + draw(st.sampled_from(["", "", "/"]))


@st.composite
def pattern_sources(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A Starlette path with at least one parameter, and the parameters' names."""
    count = draw(st.integers(1, 3))
    pieces: list[str] = []
    names: list[str] = []
    for index in range(count):
        last = index == count - 1
        kind = draw(st.sampled_from(["text", "str", "int"] + (["path"] if last and index > 0 else [])))
        if kind == "text":
            pieces.append(draw(st.sampled_from(["a", "b", "c", "7"])))
        else:
            name = f"p{index}"
            names.append(name)
            pieces.append("{" + name + ("" if kind == "str" else ":" + kind) + "}")
    if not names:
        pieces.append("{p9}")
        names.append("p9")
    return "/" + "/".join(pieces), names


@st.composite
def rule_specs(draw: st.DrawFn, index: int) -> RuleSpec:
    exact = draw(st.booleans())
    if exact:
        source, names = draw(literal_paths(["a", "b", "7", "x y"], max_size=2)), list[str]()
    else:
        source, names = draw(pattern_sources())
    path: tuple[tuple[str, str], ...] | None = None
    query_parts: tuple[tuple[str, str | None, str, str | None], ...] = ()
    if draw(st.integers(0, 9)) > 0:  # one in ten is a 410 Gone
        # Targets live under /new/, which no source matches but '/{p0}/...' ones, so loops are rare.
        pieces: list[tuple[str, str]] = [("text", f"/new/r{index}")]
        for name in draw(st.lists(st.sampled_from(names), max_size=2)) if names else []:
            pieces.append(("text", "/"))
            pieces.append(("group", name))
        if draw(st.booleans()):
            pieces.append(("text", "/"))
        path = tuple(pieces)
        parts: list[tuple[str, str | None, str, str | None]] = []
        used: set[str] = set()  # one placeholder per parameter: see test_one_parameter_twice_...
        for key in draw(st.lists(st.sampled_from(["k", "m", "q"]), max_size=2, unique=True)):
            param = draw(st.sampled_from(["q", "k", "z"]))
            if draw(st.booleans()) or param in used:
                parts.append((key, draw(st.sampled_from(["1", "two", ""])), "", None))
            else:
                used.add(param)
                parts.append((key, None, param, draw(st.sampled_from([None, "dflt", ""]))))
        query_parts = tuple(parts)
    return RuleSpec(
        exact=exact,
        source=source,
        path=path,
        query_parts=query_parts,
        status=draw(st.sampled_from([None, "permanent", "temporary", 301, 302, 303, 307, 308])),
        query=draw(st.sampled_from(["keep", "drop", "merge"])),
        methods=draw(st.none() | st.frozensets(st.sampled_from(["GET", "POST", "PUT"]), min_size=1)),
    )


@st.composite
def rule_lists(draw: st.DrawFn) -> list[RuleSpec]:
    count = draw(st.integers(1, 6))
    return [draw(rule_specs(index)) for index in range(count)]


@st.composite
def requests_for(draw: st.DrawFn, specs: list[RuleSpec]) -> tuple[str, str]:
    """(method, path): mostly a path that one of the rules' sources matches, so that rules compete."""
    spec = draw(st.sampled_from(specs))
    method = draw(st.sampled_from(sorted(spec.methods | {"HEAD"}) if spec.methods and draw(st.booleans()) else METHODS))
    if draw(st.integers(0, 3)) == 0:
        return method, draw(literal_paths() | st.sampled_from(["/new/r0", "/a\n", "/7\n", "/a/b/c/\n"]))
    if spec.exact:
        return method, spec.source
    _, path_format, convertors = compile_path(spec.source)
    values = {}
    for name, convertor in convertors.items():
        kind = type(convertor).__name__
        choices = ["7", "007", "a/b", "x y/?"] if kind == "PathConvertor" else ["7", "007", "12"]
        if kind == "StringConvertor":
            choices = ["7", "a", "b", "x y", "é", "\\", "%41"]
        values[name] = draw(st.sampled_from(choices))
    return method, path_format.format(**values) + draw(st.sampled_from(["", "", "", "/", "\n"]))


QUERY_STRINGS = st.lists(
    st.tuples(st.sampled_from(["k", "m", "q", "z"]), st.sampled_from(["", "1", "v", "x2"])), max_size=3
).map(lambda pairs: "&".join(f"{key}={value}" for key, value in pairs))


def expected_redirect(
    specs: list[RuleSpec], default: Any, method: str, path: str, query: str
) -> tuple[int, str | None, list[tuple[str, str]], bool] | None:
    """(status, decoded Location path or None, query pairs, whether their order is promised) of the first
    rule that applies; None to pass on.

    A plain loop over the rules in order: an exact source equals the path, a Starlette path
    matches all of it (compile_path's regex, ending at the path's end); `methods` with GET
    brings HEAD; a `{?param}` without a default that the query lacks means no match.
    """
    request_pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(request_pairs)
    for spec in specs:
        if spec.methods is not None and method not in spec.methods | ({"HEAD"} if "GET" in spec.methods else set()):
            continue
        groups: dict[str, str] = {}
        if spec.exact:
            if path != spec.source:
                continue
        else:
            regex, _, _ = compile_path(spec.source)
            found = regex.match(path)
            if found is None or found.end() != len(path):
                continue
            groups = found.groupdict()
        required = [param for _, value, param, default_ in spec.query_parts if value is None and default_ is None]
        if any(param not in params for param in required):
            continue
        status = spec.status if spec.status is not None else default
        statuses = NAMED[status] if isinstance(status, str) else (status, status)
        code = statuses[0 if method in ("GET", "HEAD") else 1]
        if spec.path is None:
            return 410, None, [], True
        new_path = "".join(value if kind == "text" else groups[value] for kind, value in spec.path)
        if new_path.startswith("//"):  # a client would read it as another host: passed on instead
            return None
        target_pairs = [
            (key, literal if literal is not None else params.get(param, default_ or ""))
            for key, literal, param, default_ in spec.query_parts
        ]
        if spec.query == "keep":  # the target's own parameters first, then the request's
            pairs = target_pairs + request_pairs
        elif spec.query == "drop":
            pairs = target_pairs
        else:
            replaced = {key for key, _ in target_pairs}
            pairs = target_pairs + [(key, value) for key, value in request_pairs if key not in replaced]
        # "merge" promises which values win, not their order.
        return code, new_path, pairs, spec.query != "merge"
    return None


def _answers(spec: RuleSpec) -> set[str] | None:
    """The methods a rule answers (None: all); GET brings HEAD, as in Starlette's routes."""
    if spec.methods is None:
        return None
    methods = set(spec.methods)
    return methods | {"HEAD"} if "GET" in methods else methods


def _needs_a_parameter(spec: RuleSpec) -> bool:
    """A `{?name}` without a default: the rule answers only requests that have that parameter."""
    return any(literal is None and default is None for _, literal, _, default in spec.query_parts)


def shadowed(specs: list[RuleSpec]) -> bool:
    """Whether an exact rule repeats an earlier one's source and that one answers all it would."""
    for index, later in enumerate(specs):
        for earlier in specs[:index]:
            if not (earlier.exact and later.exact and earlier.source == later.source):
                continue
            if _needs_a_parameter(earlier) and earlier.path is not None:
                continue
            wider, narrower = _answers(earlier), _answers(later)
            if wider is None or (narrower is not None and narrower <= wider):
                return True
    return False


@given(
    specs=rule_lists(),
    default=st.sampled_from(["permanent", "temporary", 302, 307]),
    query=QUERY_STRINGS,
    data=st.data(),
)
async def test_redirects_follow_the_first_rule_that_matches(
    specs: list[RuleSpec], default: Any, query: str, data: st.DataObject
) -> None:
    method, path = data.draw(requests_for(specs), label="method, path")
    try:
        app = RedirectMiddleware(reached_app, rules=[spec.rule() for spec in specs], status=default)
    except ValueError as error:
        if shadowed(specs):  # an exact rule no request could reach: refused, as it should be
            assert "is already rule" in str(error)
            return
        assume("loop" not in str(error) and "keep redirecting" not in str(error))
        raise
    assert not shadowed(specs), "a rule that can never fire was accepted"
    answer = await call(app, path, method=method, query=query.encode())
    expected = expected_redirect(specs, default, method, path, query)
    event("passed on" if expected is None else "410" if expected[1] is None else "redirected")

    if expected is None:
        assert (answer.status, answer.body, answer.location) == (200, b"app", None)
        return
    status, new_path, pairs, ordered = expected
    assert answer.status == status and answer.body == b""
    if new_path is None:
        assert answer.location is None
        return
    assert answer.location is not None and re.fullmatch(r"[!-~]+", answer.location), answer.location
    location_path, question, location_query = answer.location.partition("?")
    assert unquote(location_path) == new_path
    got = parse_qsl(location_query, keep_blank_values=True)
    assert got == pairs if ordered else sorted(got) == sorted(pairs)
    assert question == "?" or not pairs


async def test_one_parameter_twice_in_a_target_keeps_each_placeholders_default() -> None:
    # Found by the property above: one default per name, the last written, used to serve both.
    app = RedirectMiddleware(
        reached_app, rules=[Redirect("/s", "/new?a={?q}&b={?q=dflt}&c={?r=x}&d={?r=y}", query="drop")]
    )

    # README: "{?name} ... without one [a default], a request lacking the parameter does not match".
    answer = await call(app, "/s")
    assert (answer.status, answer.location) == (200, None)
    answer = await call(app, "/s", query=b"q=1")
    assert answer.location == "/new?a=1&b=1&c=x&d=y"


# -- CORS decisions ------------------------------------------------------------------------------------

APP = "https://app.example.com"
OTHER = "https://other.example.com"
LOCAL = "http://localhost:3000"
SUBDOMAINS = r"^https://[a-z]+\.example\.com$"
WILDCARD = "https://*.example.com"
# The README: one or more labels before the domain, that scheme, no port.
WILDCARD_ORIGIN = re.compile(r"https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+example\.com")
ORIGINS = [
    APP,
    OTHER,
    LOCAL,
    "http://127.0.0.1:8000",
    "https://evil.example",
    "https://app.example.com.evil",
    "null",
    "https://a-b.c.example.com",
    "https://example.com",
    "https://aexample.com",
]
SAFELISTED = {"accept", "accept-language", "content-language", "content-type"}
LOCAL_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")
# The README's preset table, as the model reads it: (origins or None for the local ones, credentials, methods, headers).
PRESET_TABLE: dict[str, tuple[list[str] | None, bool, list[str], list[str]]] = {
    "development": (None, True, ["*"], ["*"]),
    "public": (["*"], False, ["GET", "HEAD"], ["*"]),
    "first-party": (
        [],
        True,
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        ["Authorization", "Content-Type", "X-Requested-With"],
    ),
    "strict": ([], False, ["GET", "HEAD"], []),
}


@dataclass(frozen=True)
class CORSCase:
    options: dict[str, Any]
    method: str
    headers: list[tuple[str, str]]


OPTION_VALUES = {
    "allow_origins": st.just(["*"]) | st.lists(st.sampled_from([APP, OTHER, LOCAL, WILDCARD]), unique=True),
    "allow_origin_regex": st.just(SUBDOMAINS),
    "allow_credentials": st.booleans(),
    "allow_methods": st.just(["*"]) | st.lists(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]), unique=True),
    "allow_headers": st.just(["*"]) | st.lists(st.sampled_from(["X-Token", "Authorization"]), unique=True),
}


@st.composite
def cors_options(draw: st.DrawFn) -> dict[str, Any]:
    """Keywords for CORSMiddleware: a preset or none, and some of Starlette's keywords."""
    options: dict[str, Any] = {}
    preset = draw(st.sampled_from([None, "development", "public", "first-party", "strict"]))
    if preset is not None:
        options["preset"] = preset
    for name in draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)), unique=True)):
        options[name] = draw(OPTION_VALUES[name])
    if preset in ("first-party", "strict") and draw(st.integers(0, 7)):  # mostly with the origins they need
        options["allow_origins"] = draw(st.lists(st.sampled_from([APP, OTHER, LOCAL]), min_size=1, unique=True))
    return options


@st.composite
def cors_requests(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """Mostly preflights and requests with an Origin; some with parts missing or out of place."""
    kind = draw(st.sampled_from(["preflight", "preflight", "simple", "mixed"]))
    method = "OPTIONS" if kind == "preflight" else draw(st.sampled_from(["OPTIONS", "GET", "POST", "PUT"]))
    headers: list[tuple[str, str]] = []
    origin = draw(st.sampled_from(ORIGINS) if kind != "mixed" else st.sampled_from(ORIGINS) | st.none())
    if origin is not None:
        headers.append(("origin", origin))
    methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "put"])
    requested = draw(methods if kind == "preflight" else methods | st.none())
    if requested is not None and kind != "simple":
        headers.append(("access-control-request-method", requested))
    names = draw(
        st.none() | st.lists(st.sampled_from(["X-Token", "authorization", "Content-Type", "X-Other"]), min_size=1)
    )
    if names is not None:
        headers.append(("access-control-request-headers", draw(st.sampled_from([", ", ","])).join(names)))
    return method, headers


async def asgi(app: ASGIApp, method: str, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, response headers, body) of one request, called as plain ASGI."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.example.com"), *((name.encode(), value.encode()) for name, value in headers)],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 443),
    }
    messages = await call_asgi(app, scope)
    starts = [message for message in messages if message["type"] == "http.response.start"]
    assert len(starts) == 1
    response_headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in starts[0]["headers"]]
    return starts[0]["status"], response_headers, b"".join(message.get("body", b"") for message in messages[1:])


def resolved(options: dict[str, Any]) -> tuple[list[str], str | None, bool, list[str], list[str]] | None:
    """(origins, origin regex, credentials, methods, headers) from the README; None where it says "refused"."""
    origins: list[str] = []
    regex: str | None = None
    credentials, methods, headers = False, ["GET"], list[str]()  # Starlette's defaults
    preset = options.get("preset")
    if preset is not None:
        table_origins, credentials, methods, headers = PRESET_TABLE[preset]
        if table_origins is None:
            regex = "local"
        else:
            origins = table_origins
    origins = options.get("allow_origins", origins)
    regex = options.get("allow_origin_regex", regex)
    credentials = options.get("allow_credentials", credentials)
    methods = options.get("allow_methods", methods)
    headers = options.get("allow_headers", headers)
    if "*" in origins and credentials:
        return None  # "allow_credentials=True with '*' in allow_origins" is refused
    if preset in ("first-party", "strict") and ((not origins and regex is None) or "*" in origins):
        return None  # these presets need named origins
    return origins, regex, credentials, methods, headers


def origin_allowed(origin: str, origins: list[str], regex: str | None) -> bool:
    if "*" in origins or origin in origins:
        return True
    if WILDCARD in origins and WILDCARD_ORIGIN.fullmatch(origin):
        return True
    if regex == "local":
        return LOCAL_ORIGIN.fullmatch(origin) is not None
    return regex is not None and re.fullmatch(regex, origin) is not None


def vary(headers: list[tuple[str, str]]) -> list[str]:
    return [part.strip() for name, value in headers if name == "vary" for part in value.split(",")]


@given(options=cors_options(), request=cors_requests())
async def test_cors_decisions_follow_the_readme(
    options: dict[str, Any], request: tuple[str, list[tuple[str, str]]]
) -> None:
    method, headers = request
    settings = resolved(options)
    if settings is None:
        event("refused")
        with pytest.raises(ValueError):
            CORSMiddleware(reached_app, **options)
        return
    origins, regex, credentials, methods, allowed_headers = settings
    status, response, body = await asgi(CORSMiddleware(reached_app, **options), method, headers)
    got = dict(response)
    sent = dict(headers)
    origin = sent.get("origin")
    allowed = origin is not None and origin_allowed(origin, origins, regex)
    expected_origin = ("*" if "*" in origins and not credentials else origin) if allowed else None

    assert "Origin" in vary(response)
    if origin is not None and method == "OPTIONS" and "access-control-request-method" in sent:  # a preflight
        event("preflight")
        requested = [name.strip().lower() for name in sent.get("access-control-request-headers", "").split(",")]
        headers_ok = (
            "*" in allowed_headers
            or "access-control-request-headers" not in sent
            or all(name in SAFELISTED | {header.lower() for header in allowed_headers} for name in requested)
        )
        method_ok = sent["access-control-request-method"] in (
            ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY"] if "*" in methods else methods
        )
        ok = allowed and method_ok and headers_ok
        assert status == (200 if ok else 400), (status, body)
        assert body != b"app"  # answered by the middleware, never by the app
    else:
        event("simple")
        assert (status, body) == (200, b"app")
    if allowed:
        assert got.get("access-control-allow-origin") == expected_origin
        assert got.get("access-control-allow-credentials") == ("true" if credentials else None)
    elif "*" not in origins:
        assert "access-control-allow-origin" not in got


def starlette_equivalent(options: dict[str, Any]) -> dict[str, Any]:
    """The same settings for Starlette, which compares allow_origins literally: the wildcard as its regex."""
    if WILDCARD not in options.get("allow_origins", ()):
        return options
    regexes = [r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+example\.com$"]
    if "allow_origin_regex" in options:
        regexes.insert(0, options["allow_origin_regex"])
    origins = [origin for origin in options["allow_origins"] if origin != WILDCARD]
    return {**options, "allow_origins": origins, "allow_origin_regex": "|".join(regexes)}


STARLETTE_OPTION_VALUES = {
    **OPTION_VALUES,
    "allow_origin_regex": st.sampled_from([SUBDOMAINS, r"^http://localhost(:[0-9]+)?$"]),
    "allow_private_network": st.booleans(),
    "expose_headers": st.lists(st.sampled_from(["X-Total-Count", "X-Request-Id"]), unique=True),
    "max_age": st.integers(0, 7200),
}


@given(
    names=st.lists(st.sampled_from(sorted(STARLETTE_OPTION_VALUES)), unique=True),
    request=cors_requests(),
    private_network=st.booleans(),
    data=st.data(),
)
async def test_cors_answers_as_starlettes_for_the_settings_both_accept(
    names: list[str], request: tuple[str, list[tuple[str, str]]], private_network: bool, data: st.DataObject
) -> None:
    options: dict[str, Any] = {name: data.draw(STARLETTE_OPTION_VALUES[name], label=name) for name in names}
    try:
        ours = CORSMiddleware(reached_app, **options)
    except ValueError:
        assume(False)
    method, headers = request
    if private_network:
        headers = [*headers, ("access-control-request-private-network", "true")]

    theirs = starlette_equivalent(options)
    assert await asgi(ours, method, headers) == await asgi(
        StarletteCORSMiddleware(reached_app, **theirs), method, headers
    )


# What an app's response may already carry that CORS edits: its own CORS headers, Vary, others.
APP_HEADERS = st.lists(
    st.sampled_from(
        [
            ("vary", "Accept-Encoding"),
            ("vary", "origin"),
            ("vary", "Accept, Origin"),
            ("access-control-allow-origin", "https://elsewhere.example"),
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "false"),
            ("access-control-expose-headers", "X-Own"),
            ("content-type", "text/plain"),
            ("x-app", "1"),
        ]
    ),
    max_size=5,
)


def responding(headers: list[tuple[str, str]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(name.encode(), value.encode()) for name, value in headers]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": b"app"})

    return app


def by_name(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Each header's values in order, Vary as its items once each (Starlette's may repeat "Origin")."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        if name == "vary":
            items = values.setdefault(name, [])
            for item in value.split(","):
                if item.strip() and item.strip().lower() not in [seen.lower() for seen in items]:
                    items.append(item.strip())
        else:
            values.setdefault(name, []).append(value)
    return values


@st.composite
def starlette_options(draw: st.DrawFn) -> dict[str, Any]:
    """Some of Starlette's keywords, with values both middlewares may accept."""
    names = draw(st.lists(st.sampled_from(sorted(STARLETTE_OPTION_VALUES)), unique=True))
    return {name: draw(STARLETTE_OPTION_VALUES[name]) for name in names}


@given(options=starlette_options(), request=cors_requests(), response=APP_HEADERS)
async def test_cors_edits_any_response_as_starlettes_does(
    options: dict[str, Any], request: tuple[str, list[tuple[str, str]]], response: list[tuple[str, str]]
) -> None:
    """Ours makes Starlette's edits in one pass (cors.py); on any response, they come out the same."""
    try:
        ours = CORSMiddleware(responding(response), **options)
    except ValueError:
        assume(False)
    method, headers = request
    theirs = StarletteCORSMiddleware(responding(response), **starlette_equivalent(options))

    (status, got, body), (their_status, expected, their_body) = [
        await asgi(app, method, headers) for app in (ours, theirs)
    ]

    assert (status, body) == (their_status, their_body)
    assert by_name(got) == by_name(expected)
    assert len([name for name, _ in got if name == "vary"]) == 1


# -- Header names in any case --------------------------------------------------------------------------


def any_case_bytes(name: bytes) -> st.SearchStrategy[bytes]:
    """`name` with each ASCII letter in upper or lower case."""
    return st.tuples(*(st.sampled_from(sorted({bytes([byte]).lower(), bytes([byte]).upper()})) for byte in name)).map(
        b"".join
    )


@given(names=st.frozensets(st.binary(max_size=12).map(bytes.lower), max_size=4), data=st.data())
def test_has_any_is_its_definition_for_any_bytes(names: frozenset[bytes], data: st.DataObject) -> None:
    """`has_any` skips lowering names with no upper-case letter; for any bytes it answers as lowering each would."""
    # Raw bytes, and the names looked for in any case (which random bytes alone would seldom be).
    name = st.binary(max_size=12)
    if names:
        name |= st.sampled_from(sorted(names)).flatmap(any_case_bytes)
    headers = data.draw(st.lists(st.tuples(name, st.just(b"v")), max_size=6))
    expected = any(name.lower() in names for name, _ in headers)
    event(f"found: {expected}")
    assert has_any(headers, names) == expected
    assert has_any(headers, tuple(names)) == expected


def any_case(name: str) -> st.SearchStrategy[str]:
    """`name` with each letter in upper or lower case."""
    return st.tuples(*(st.sampled_from(sorted({char.lower(), char.upper()})) for char in name)).map("".join)


# Headers that the timing and CORS layers set, replace or merge, as an app may spell them.
OWN_HEADERS = st.lists(
    st.sampled_from(
        [
            ("x-process-time", "stale"),
            ("access-control-allow-origin", "https://elsewhere.example"),
            ("access-control-expose-headers", "X-Own"),
            ("vary", "Accept"),
            ("content-type", "text/plain"),
        ]
    ).flatmap(lambda header: any_case(header[0]).map(lambda name: (name, header[1]))),
    max_size=5,
)


@given(response=OWN_HEADERS)
async def test_the_apps_headers_in_any_case_are_replaced_or_merged_never_doubled(
    response: list[tuple[str, str]],
) -> None:
    origin = "https://app.example.com"
    app = CORSMiddleware(TimingMiddleware(responding(response)), preset="strict", allow_origins=[origin])

    _, got, _ = await asgi(app, "GET", [("origin", origin)])

    values: dict[str, list[str]] = {}
    for name, value in got:
        values.setdefault(name.lower(), []).append(value)
    for name in ("x-process-time", "access-control-allow-origin", "vary"):
        assert len(values[name]) == 1, (name, got)
    assert values["x-process-time"] != ["stale"]
    assert values["access-control-allow-origin"] == [origin]
    assert "origin" in {item.strip().lower() for item in values["vary"][0].split(",")}
    # A list header may come as several lines (RFC 9110, section 5.3): the page reads their items.
    exposed = {item.strip().lower() for value in values["access-control-expose-headers"] for item in value.split(",")}
    own = {"x-own"} if "x-own" in {value.lower() for name, value in response} else set()
    assert exposed == {"x-process-time", "server-timing", *own}
