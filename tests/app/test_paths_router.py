"""`include=` / `exclude=` / `policies=` patterns held to Starlette's router itself.

For each pattern, a real Starlette app has a route made from it and three middlewares limited by
it (an `include=` and an `exclude=` dispatch function, and a CORS policy). Generated request
paths (control characters, final newlines, the characters percent-escapes decode to, non-ASCII,
empty segments, very long paths) go through the whole app as raw ASGI scopes, also under a
`root_path` and inside a `Mount`; each test asserts that the middlewares act on exactly the
requests the router sends to the pattern's route. The last tests send hostile request lines to a
real uvicorn.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import pytest
import starlette._utils
from hypothesis import event, given, settings
from hypothesis import strategies as st
from peer import call_asgi
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp
from wire import exchange

import starlette_mw
import starlette_mw._cors.middleware
import starlette_mw._paths
from starlette_mw import CallNext, CORSMiddleware, CORSPolicy, DispatchFunction, PathFilter
from starlette_mw import _starlette_routing as routing


class _Hex(Convertor[str]):
    """A convertor the app registers, as a user would: Starlette syntax must honour it too."""

    regex = "[0-9a-f]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _convertor(name: str, regex: str) -> Convertor[str]:
    return type(name, (_Hex,), {"regex": regex})()  # type: ignore[no-any-return]


register_url_convertor("paths_test_hex", _Hex())

# Compiled regexes, each beside a route that matches with the same regex: a route '/{r:rx}' whose
# convertor's regex is the pattern's after its leading '/' (inline '(?s:...)' stands for DOTALL).
REGEXES = {
    "admin": (re.compile("/admin"), "admin"),
    "versioned": (re.compile(r"/v\d+/.*"), r"v\d+/.*"),
    "versioned_dotall": (re.compile(r"/v\d+/.*", re.DOTALL), r"(?s:v\d+/.*)"),
    "files": (re.compile(r"/(?:a|b)+\.txt"), r"(?:a|b)+\.txt"),
}
for _name, (_, _route_regex) in REGEXES.items():
    register_url_convertor(f"paths_test_{_name}", _convertor(f"Regex_{_name}", _route_regex))

UUID = "6f1c3a8e-2b7d-4c1e-9f0a-1b2c3d4e5f60"

# Exact paths and Starlette's path syntax: the pattern matches what `Route(pattern)` receives.
ROUTE_PATTERNS = [
    "/admin",
    "/",
    "/api/v1.0",
    "/a b/é",
    "/users/",
    "/x{y",
    "/users/{id:int}",
    "/hello/{name}",
    "/hello/{name:str}/x",
    "/files/{rest:path}",
    "/f/{x:float}",
    "/u/{u:uuid}",
    "/c/{c:paths_test_hex}",
    "/{a}/{b:int}/x",
]
# '/prefix/*': the route at the prefix, a Mount there, and routes with a segment or two below it.
SUBTREE_PATTERNS = ["/api/*", "/users/{id:int}/*", "/{name}/*", "/a b/é/*"]

# Strings that make up request paths: the patterns' own words and values, and the hostile parts.
TOKENS = [
    "admin", "api", "users", "hello", "files", "f", "u", "c", "x", "v1", "v22", "v1.0", "x{y", "a b", "é",
    "12", "007", "3.5", "1e5", "-1", UUID, UUID.replace("-", ""), "beef", "BEEF", "a.txt", "ab.txt",
    ".", "..", "", "*", "~", "%0A", "%00",
    "\n", "\r", "\r\n", "\x00", "\t", " ", "\x7f", "\x85", "\u2028", "\ufffd", "\U0001f600",
]  # fmt: skip
TAILS = ["", "", "/", "\n", "\n", "\n", "\n\n", "/\n", "\r\n", "\r", "\x00", "%0A", " ", "\u2028"]


REGEX_SEEDS = {
    "admin": ["/admin"],
    "versioned": ["/v1/x", "/v22/"],
    "versioned_dotall": ["/v1/x"],
    "files": ["/ab.txt"],
}


PARAMETER = re.compile(r"\{[^}]*\}")


def seeds(pattern: str) -> list[str]:
    """Paths near the pattern: it with each parameter filled in with a value of several kinds."""
    if pattern in REGEX_SEEDS:
        return REGEX_SEEDS[pattern]
    values = ["12", "3.5", UUID, "beef", "bob", "a/b", "", "\n", "x\ny"]
    pattern = pattern.removesuffix("/*")
    return [pattern, *(PARAMETER.sub(lambda _: value, pattern) for value in values)]  # noqa: B023 - used at once


segments = st.one_of(
    st.sampled_from(TOKENS),
    st.text(st.characters(max_codepoint=0x2FF, exclude_categories=["Cs"]), max_size=4),
    st.tuples(st.sampled_from(TOKENS), st.sampled_from(TOKENS)).map("".join),
)
generated = st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts))


def paths_near(pattern: str) -> st.SearchStrategy[str]:
    """Request paths for a pattern: mostly its own, changed at the end, some from anywhere, some huge."""
    near = st.tuples(st.sampled_from(seeds(pattern)), st.lists(segments, max_size=4)).map(
        lambda seed: seed[0] + "".join("/" + part for part in seed[1])
    )
    long = st.tuples(st.sampled_from(seeds(pattern)), st.sampled_from(TOKENS), st.integers(1_000, 20_000)).map(
        lambda parts: parts[0] + "/" + (parts[1] or "a") * parts[2]
    )
    own = st.sampled_from(seeds(pattern))
    return st.one_of(
        st.tuples(own, st.sampled_from(TAILS)).map("".join),
        st.tuples(own, st.sampled_from(TAILS)).map("".join),
        st.tuples(st.one_of(near, near, generated, long), st.sampled_from(TAILS)).map("".join),
        st.sampled_from(["", "*", "admin", "//admin", "/admin/../admin"]),
    )


root_paths = st.sampled_from(["/prefix", "/prefix/", "/a b", "/é", "/admin"])


# -- The app: routes from a pattern, middlewares limited by it ------------------------------------------


async def routed(request: Request) -> Response:
    return PlainTextResponse("routed")


def routes_for(pattern: str) -> list[BaseRoute]:
    """The routes a pattern stands for: `Route(pattern)`, or for '/p/*' what a path under /p reaches."""
    if pattern.endswith("/*"):
        prefix = pattern.removesuffix("/*")
        return [
            Route(prefix, routed),
            Mount(prefix, app=PlainTextResponse("routed")),
            Route(prefix + "/{paths_test_a}", routed),
            Route(prefix + "/{paths_test_a}/{paths_test_b}", routed),
        ]
    if pattern in REGEXES:
        return [Route(f"/{{r:paths_test_{pattern}}}", routed)]
    return [Route(pattern, routed)]


def marking(header: str) -> DispatchFunction:
    async def mark(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers[header] = "1"
        return response

    return mark


@functools.cache
def app_for(pattern: str) -> Starlette:
    path_pattern: str | re.Pattern[str] = REGEXES[pattern][0] if pattern in REGEXES else pattern
    app = Starlette(routes=routes_for(pattern))
    app.add_middleware(CORSMiddleware, policies={path_pattern: CORSPolicy.from_preset("public")})
    starlette_mw.middleware(app, "http", include=path_pattern)(marking("x-included"))
    starlette_mw.middleware(app, "http", exclude=path_pattern)(marking("x-not-excluded"))
    return app


@functools.cache
def mounted_app_for(pattern: str) -> Starlette:
    return Starlette(routes=[Mount("/sub", app=app_for(pattern))])


@dataclass(frozen=True)
class Outcome:
    routed: bool
    # Which of the middlewares acted: the include= one, the exclude= one, the CORS policy.
    included: bool
    not_excluded: bool
    cors: bool


async def _call(app: ASGIApp, path: str, root_path: str) -> Outcome:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"example.com"), (b"origin", b"https://elsewhere.example")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    messages = await call_asgi(app, scope)
    headers = dict(messages[0]["headers"])
    assert messages[0]["status"] != 500, (path, root_path)
    return Outcome(
        routed=b"".join(message.get("body", b"") for message in messages[1:]) == b"routed",
        included=b"x-included" in headers,
        not_excluded=b"x-not-excluded" in headers,
        cors=b"access-control-allow-origin" in headers,
    )


def call(app: ASGIApp, path: str, root_path: str = "") -> Outcome:
    return anyio.run(_call, app, path, root_path)


def check(pattern: str, app: ASGIApp, path: str, root_path: str = "") -> None:
    outcome = call(app, path, root_path)
    event("routed" if outcome.routed else "not routed")
    if not outcome.included and not outcome.not_excluded:
        # Neither ran: the outer router of the Mount case did not pass the request on.
        assert not outcome.routed and not outcome.cors, (pattern, path, root_path, outcome)
        return
    # The three middlewares agree: each pattern has one meaning for include, exclude and policies.
    assert outcome.included != outcome.not_excluded, (pattern, path, root_path, outcome)
    assert outcome.included == outcome.cors, (pattern, path, root_path, outcome)
    if outcome.routed:
        assert outcome.included, (pattern, path, root_path)
    elif pattern.endswith("/*") and outcome.included:
        # A subtree also takes what its Mount refuses only for a newline inside the rest (its '.*'
        # stops there) but which a route such as '/p/{a}/{b}/{c}' would take: with that newline
        # (all but a final one, which '$' lets through) made ordinary, the router routes it.
        plain = path[:-1].replace("\n", "~") + path[-1:]
        assert plain != path and call(app, plain, root_path).routed, (pattern, path, root_path)
    else:
        assert not outcome.included, (pattern, path, root_path, outcome)


ALL_PATTERNS = ROUTE_PATTERNS + SUBTREE_PATTERNS + list(REGEXES)
cases = st.sampled_from(ALL_PATTERNS).flatmap(lambda pattern: st.tuples(st.just(pattern), paths_near(pattern)))


# A few hundred paths each by default: a request through the app in process is cheap, and a pattern's
# own paths with a final newline are only some of them.
@settings(max_examples=3 * settings().max_examples)
@given(case=cases)
def agrees_with_the_router(case: tuple[str, str]) -> None:
    pattern, path = case
    check(pattern, app_for(pattern), path)


@settings(max_examples=3 * settings().max_examples)
@given(case=cases, root_path=root_paths, in_path=st.booleans())
def agrees_with_the_router_under_a_root_path(case: tuple[str, str], root_path: str, in_path: bool) -> None:
    # ASGI servers put root_path in front of path; some leave it out, and the routes see path as is.
    pattern, path = case
    check(pattern, app_for(pattern), root_path + path if in_path else path, root_path)


@settings(max_examples=3 * settings().max_examples)
@given(case=cases)
def agrees_with_the_router_inside_a_mount(case: tuple[str, str]) -> None:
    # The middlewares and the routes are the mounted app's: both see root_path '/sub'.
    pattern, path = case
    check(pattern, mounted_app_for(pattern), "/sub" + path)


def test_patterns_match_what_the_router_routes_to_their_route() -> None:
    agrees_with_the_router()


def test_patterns_match_what_the_router_routes_under_a_root_path() -> None:
    agrees_with_the_router_under_a_root_path()


def test_patterns_match_what_the_router_routes_inside_a_mount() -> None:
    agrees_with_the_router_inside_a_mount()


def test_the_route_path_fallback_agrees_with_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without Starlette's private helper, the package's own reading of root_path does the same.
    monkeypatch.setattr(starlette_mw._paths, "route_path", routing.own_route_path)
    monkeypatch.setattr(starlette_mw._cors.middleware, "route_path", routing.own_route_path)
    agrees_with_the_router_under_a_root_path()
    agrees_with_the_router_inside_a_mount()


def test_the_fallback_is_used_when_starlette_has_no_route_path_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(starlette._utils, "get_route_path")
    try:
        assert importlib.reload(routing).route_path is routing.own_route_path
    finally:
        monkeypatch.undo()
        importlib.reload(routing)
    assert routing.route_path is starlette._utils.get_route_path


def test_root_subtree_matches_every_path() -> None:
    everything = PathFilter(include="/*")
    assert all(everything.matches(path) for path in ["", "/", "*", "/a\nb", "/x/y\n", "\n"])


# -- Through uvicorn, with the request line as an attacker writes it -----------------------------------

SECRET = b"the secret"


def guarded_app() -> Starlette:
    async def secret(request: Request) -> Response:
        return PlainTextResponse(SECRET.decode())

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/admin", secret),
            Route("/admin/{user}", secret),
            Route("/users/{id:int}", secret),
            Route("/health", health),
            Route("/private", health),
            Route("/open", health),
        ]
    )
    # Added first, so innermost: a path it is excluded from goes out without its header.
    starlette_mw.middleware(app, "http", exclude=["/health", "/private"])(marking("x-seen"))
    app.add_middleware(
        CORSMiddleware,
        policies={
            "/private": CORSPolicy.from_preset("strict", allow_origins=["https://app.example"]),
            "/*": CORSPolicy.from_preset("public"),
        },
    )

    @starlette_mw.middleware(app, "http", include=["/admin", "/admin/*", "/users/{id:int}"])
    async def authenticate(request: Request, call_next: CallNext) -> Response:
        if request.headers.get("authorization") != "Bearer good":
            return PlainTextResponse("who are you?", status_code=401)
        return await call_next(request)

    return app


def get(base: str, target: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    request = b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\nOrigin: https://elsewhere.example\r\n"
    response = exchange(base, request + b"Connection: close\r\n\r\n", timeout=5)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


ESCAPES = [b"%0A", b"%0a", b"%0D%0A", b"%00", b"%0D", b"%09", b"%20", b"%C2%85", b"%E2%80%A8", b"%FF", b"/", b"//"]
guarded = st.tuples(
    st.sampled_from([b"/admin", b"/admin/root", b"/users/7", b"/health", b"/private"]),
    st.lists(
        st.one_of(st.sampled_from(ESCAPES), st.binary(max_size=3).map(lambda raw: b"%%%02X" * len(raw) % tuple(raw))),
        max_size=3,
    ),
).map(lambda parts: parts[0] + b"".join(parts[1]))


def test_a_final_newline_no_longer_skips_include_or_exclude_under_uvicorn(mw_live_server: Callable[..., str]) -> None:
    base = mw_live_server(guarded_app())

    assert get(base, b"/admin")[0] == 401
    assert get(base, b"/admin%0A")[0] == 401  # was 200 with the secret: the router still routes it to /admin
    status, headers, body = get(base, b"/health%0A")
    assert (status, body) == (200, b"ok") and b"x-seen" not in headers  # was marked: exclude missed it
    status, headers, _ = get(base, b"/private%0A")
    assert status == 200 and b"access-control-allow-origin" not in headers  # was '*', from the '/*' policy

    @settings(max_examples=2 * settings().max_examples)
    @given(target=guarded)
    def never_bypassed(target: bytes) -> None:
        status, headers, body = get(base, target)
        event(f"status {status}")
        assert body != SECRET, target
        if body == b"ok":  # it reached /health or /private: excluded, and /private keeps its policy
            assert b"x-seen" not in headers, target
            if target.startswith(b"/private"):
                assert b"access-control-allow-origin" not in headers, target

    never_bypassed()
