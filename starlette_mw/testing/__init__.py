"""Assertions for tests of a middleware stack: redirects, Server-Timing and CORS.

Each takes a response from Starlette's TestClient or from httpx (or httpx2, which newer Starlette
prefers), and fails with a message that shows what was expected and what came back.

    from starlette_mw.testing import assert_cors, assert_redirect, assert_server_timing, preflight

    assert_redirect(client.get("/old"), "/new", status=308)
    assert_server_timing(client.get("/users"), "app", "db")
    answer = preflight(client, "/api", origin="https://app.example.com", method="PUT", headers=["X-Key"])
    assert_cors(answer, "https://app.example.com", method="PUT", request_headers=["X-Key"])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Metric",
    "assert_cors",
    "assert_redirect",
    "assert_server_timing",
    "preflight",
    "preflight_headers",
    "server_timing",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Response(Protocol):
    """What the assertions read: an httpx, httpx2 or TestClient response."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...


def _values(response: Response, name: str) -> list[str]:
    values: list[str] = response.headers.get_list(name)  # httpx's and httpx2's Headers both have it
    return values


def _show(response: Response) -> str:
    headers = "\n".join(f"  {name}: {value}" for name, value in response.headers.items())
    return f"The response was {response.status_code}, with headers:\n{headers}"


@dataclass(frozen=True)
class Metric:
    """One Server-Timing metric: `db;dur=12.5;desc="query"` is `Metric("db", 12.5, "query")`.

    `server_timing()` and `assert_server_timing()` return them.

        >>> Metric("db", 12.5, "query")
        Metric(name='db', duration=12.5, description='query')
    """

    name: str
    duration: float | None = None
    description: str | None = None


# RFC 9110 lists and parameters: token, or token=token / token="quoted string", separated by ";".
_PARAM = re.compile(r'\s*;\s*([^\s;,=]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?')
_NAME = re.compile(r"\s*([^\s;,=\"]+)")


def server_timing(response: Response) -> list[Metric]:
    """The Server-Timing metrics of a response, in order, from every Server-Timing header it has.

    A header that does not parse raises `AssertionError`, saying where.

        >>> app = App(routes=[Route("/", homepage)], middleware=[Middleware(TimingMiddleware, metric="total")])
        >>> [metric.name for metric in server_timing(TestClient(app).get("/"))]
        ['total']
    """
    metrics = []
    for header in _values(response, "server-timing"):
        position = 0
        while position < len(header):
            name = _NAME.match(header, position)
            if name is None:
                raise AssertionError(f"Server-Timing header {header!r} cannot be parsed at {header[position:]!r}.")
            position = name.end()
            params: dict[str, str] = {}
            while (param := _PARAM.match(header, position)) is not None:
                key, value = param.group(1).lower(), param.group(2) or ""
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params.setdefault(key, value)  # the spec keeps the first of a repeated parameter
                position = param.end()
            duration = params.get("dur")
            metrics.append(Metric(name.group(1), None if duration is None else float(duration), params.get("desc")))
            rest = re.compile(r"\s*(,|$)").match(header, position)
            if rest is None:
                raise AssertionError(f"Server-Timing header {header!r} cannot be parsed at {header[position:]!r}.")
            position = rest.end()
    return metrics


def assert_server_timing(
    response: Response, *names: str, descriptions: Mapping[str, str] | None = None
) -> list[Metric]:
    """Assert the response's Server-Timing metrics have exactly these names, in this order.

    `descriptions` maps names to the description each must have. Returns the metrics, to check
    durations.

        >>> app = App(routes=[Route("/", homepage)], middleware=[Middleware(TimingMiddleware)])
        >>> metrics = assert_server_timing(TestClient(app).get("/"), "app")
        >>> metrics[0].duration >= 0
        True
    """
    metrics = server_timing(response)
    found = [metric.name for metric in metrics]
    if found != list(names):
        raise AssertionError(
            f"Expected Server-Timing metrics {list(names)}, got {found}.\n"
            f"Server-Timing: {_values(response, 'server-timing')}\n{_show(response)}"
        )
    for name, description in (descriptions or {}).items():
        actual = [metric.description for metric in metrics if metric.name == name]
        if description not in actual:
            raise AssertionError(
                f"Expected Server-Timing metric {name!r} with description {description!r}, got {actual}.\n"
                f"{_show(response)}"
            )
    return metrics


def assert_redirect(response: Response, location: str, status: int | None = None) -> None:
    """Assert the response redirects to `location` (as the Location header says it), with `status` if given.

    Without `status`, any redirect status (301, 302, 303, 307 or 308) will do.

        >>> app = App(middleware=[Middleware(RedirectMiddleware, rules=[Redirect("/old", "/new")])])
        >>> assert_redirect(TestClient(app).get("/old", follow_redirects=False), "/new", status=301)
    """
    statuses = REDIRECT_STATUSES if status is None else {status}
    actual = _values(response, "location")
    if response.status_code not in statuses or actual != [location]:
        expected_status = "a redirect status (301, 302, 303, 307 or 308)" if status is None else f"status {status}"
        raise AssertionError(
            f"Expected a redirect to {location!r} with {expected_status}; got status {response.status_code} "
            f"with Location {actual[0] if len(actual) == 1 else actual or None!r}.\n{_show(response)}"
        )


def _names(response: Response, header: str) -> set[str]:
    return {name.strip().lower() for value in _values(response, header) for name in value.split(",") if name.strip()}


def assert_cors(
    response: Response,
    origin: str | None,
    *,
    credentials: bool | None = None,
    expose: Iterable[str] = (),
    vary: bool | None = None,
    method: str | None = None,
    request_headers: Iterable[str] = (),
) -> None:
    """Assert what a browser would conclude from the response's CORS headers for a page on `origin`.

    `origin=None` asserts the response allows no origin (no Access-Control-Allow-Origin). Otherwise
    Access-Control-Allow-Origin must be `origin`, or `"*"` when `origin="*"`. `credentials=True` /
    `False` asserts Access-Control-Allow-Credentials is / is not "true"; `expose` lists headers that
    Access-Control-Expose-Headers must name; `vary=True` asserts `Vary` names Origin.

    For a preflight's answer, `method` and `request_headers` are what the page asked for: the
    browser goes on only with a 2xx status and Access-Control-Allow-Methods / -Headers that name
    them (a `*` counts only without credentials, as in browsers).

        >>> app = App(routes=[Route("/", homepage)], middleware=[Middleware(CORSMiddleware, preset="public")])
        >>> assert_cors(TestClient(app).get("/", headers={"Origin": "https://any.example"}), "*", credentials=False)
    """
    problems = []
    allowed = _values(response, "access-control-allow-origin")
    if origin is None:
        if allowed:
            problems.append(f"expected no Access-Control-Allow-Origin, got {allowed}")
    elif allowed != [origin]:
        problems.append(f"expected Access-Control-Allow-Origin {origin!r}, got {allowed or None}")
    with_credentials = _values(response, "access-control-allow-credentials") == ["true"]
    if credentials is not None and credentials != with_credentials:
        problems.append(
            f"expected credentials {'allowed' if credentials else 'not allowed'}, got Access-Control-Allow-"
            f"Credentials {_values(response, 'access-control-allow-credentials') or None}"
        )
    # Fetch treats "*" as a wildcard only for requests without credentials.
    wildcard = not with_credentials
    exposed = _names(response, "access-control-expose-headers")
    missing = [name for name in expose if name.lower() not in exposed and not (wildcard and "*" in exposed)]
    if missing:
        problems.append(f"expected Access-Control-Expose-Headers to name {missing}, got {sorted(exposed) or None}")
    varies = _names(response, "vary")
    if vary is not None and vary != ("origin" in varies or "*" in varies):
        problems.append(
            f"expected Vary {'with' if vary else 'without'} Origin, got {_values(response, 'vary') or None}"
        )
    if method is not None:
        if not 200 <= response.status_code < 300:
            problems.append(f"expected a 2xx status for the preflight, got {response.status_code}")
        methods = _names(response, "access-control-allow-methods")
        if method.lower() not in methods and not (wildcard and "*" in methods):
            problems.append(f"expected Access-Control-Allow-Methods to name {method!r}, got {sorted(methods) or None}")
        granted = _names(response, "access-control-allow-headers")
        refused = [
            name for name in request_headers if name.lower() not in granted and not (wildcard and "*" in granted)
        ]
        if refused:
            problems.append(f"expected Access-Control-Allow-Headers to name {refused}, got {sorted(granted) or None}")
    if problems:
        raise AssertionError("CORS headers: " + "; ".join(problems) + f".\n{_show(response)}")


def preflight_headers(origin: str, method: str, headers: Iterable[str] = ()) -> dict[str, str]:
    """The headers of the preflight a browser sends before `method` with `headers` from `origin`.

    Header names are sent in lower case, as browsers send them.

        >>> preflight_headers("https://app.example.com", "PUT", ["X-Key"])["Access-Control-Request-Headers"]
        'x-key'
    """
    result = {"Origin": origin, "Access-Control-Request-Method": method}
    requested = ", ".join(name.lower() for name in headers)
    if requested:
        result["Access-Control-Request-Headers"] = requested
    return result


def preflight(client: Any, url: str, *, origin: str, method: str, headers: Iterable[str] = ()) -> Any:
    """Send the CORS preflight (OPTIONS) a browser would, with a TestClient or an httpx.Client.

    For an async client: `await client.options(url, headers=preflight_headers(...))`.

        >>> cors = Middleware(CORSMiddleware, preset="strict", allow_origins=["https://app.example.com"])
        >>> client = TestClient(App(routes=[Route("/", homepage)], middleware=[cors]))
        >>> answer = preflight(client, "/", origin="https://app.example.com", method="GET")
        >>> assert_cors(answer, "https://app.example.com", credentials=False, method="GET")
    """
    return client.options(url, headers=preflight_headers(origin, method, headers))
