"""Property-based tests: redirect rules and CORS decisions against small reference models.

Each model is a plain loop or a few comparisons written from the README, not from the code; the
middleware answers through a real ASGI call. Examples per test come from the hypothesis profile
(tests/conftest.py): a short run by default, `--hypothesis-profile=long` for many more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send
from test_redirects import call

from starlette_mw import Redirect, RedirectMiddleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Pure decisions, no concurrency: one backend is enough here (tests/test_fuzz.py runs both)."""
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
    query: str
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
        return Redirect(self.source, self.target(), status=status, query=self.query, methods=self.methods)  # type: ignore[arg-type]


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
        assume("loop" not in str(error) and "keep redirecting" not in str(error))
        raise
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


@pytest.mark.xfail(
    strict=True,
    reason="Template keeps one default per parameter name, the last one written: {?q} then {?q=dflt} "
    "renders 'dflt' for both and matches without q (found by the property above; the generator now "
    "uses each parameter once). Either refuse the rule or keep each placeholder's own default.",
)
async def test_one_parameter_twice_in_a_target_keeps_each_placeholders_default() -> None:
    app = RedirectMiddleware(reached_app, rules=[Redirect("/s", "/new?a={?q}&b={?q=dflt}")])

    answer = await call(app, "/s")

    # README: "{?name} ... without one [a default], a request lacking the parameter does not match".
    assert (answer.status, answer.location) == (200, None)
