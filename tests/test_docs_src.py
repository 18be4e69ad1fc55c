"""Every example of the documentation, run: each file under docs_src/ is imported, its app called,
and what its page says it shows is checked. A snippet that fails when pasted is a bug."""

from __future__ import annotations

import ast
import doctest
import http.client
import importlib.metadata
import inspect
import re
import subprocess
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import starlette_mw
from starlette_mw.testing import assert_cors, assert_redirect, assert_server_timing, preflight, server_timing

ROOT = Path(__file__).parent.parent
DOCS_SRC = ROOT / "docs_src"
Client = Callable[..., Any]
ORIGIN = "https://app.example.com"


def test_getting_started_starlette(mw_client: Client) -> None:
    from docs_src.getting_started.starlette_app import app

    response = mw_client(app).get("/")
    assert response.json() == {"hello": "world"}
    assert float(response.headers["X-Process-Time"]) > 0


def test_getting_started_curl_transcript(mw_live_server: Callable[..., str]) -> None:
    # The page's `curl -i` transcript is what uvicorn answers: the status line, every header in
    # order (the date and the time vary), and the body.
    from docs_src.getting_started.starlette_app import app

    page = (ROOT / "docs" / "getting-started.md").read_text()
    shown = re.search(r"^\$ curl -i http://127\.0\.0\.1:8000/\n(.*?)^```", page, re.M | re.S)
    assert shown is not None
    shown_head, shown_body = shown[1].split("\n\n", 1)
    url = urllib.parse.urlsplit(mw_live_server(app))
    connection = http.client.HTTPConnection(url.netloc)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        head = [f"HTTP/1.1 {response.status} {response.reason}", *(f"{k}: {v}" for k, v in response.getheaders())]
        body = response.read().decode()
    finally:
        connection.close()

    def masked(lines: list[str]) -> list[str]:
        return [re.sub(r"^(date|x-process-time): .*", r"\1: ...", line) for line in lines]

    assert masked(head) == masked(shown_head.splitlines())
    assert body + "\n" == shown_body
    assert float(response.getheader("x-process-time", "")) > 0


def test_runtime_dependencies_are_those_the_pages_name() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0] for requirement in dependencies}
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        # "The package itself needs only `a`, `b` (...) and `c`;": every name, up to the `;` or `.`
        sentence = re.search(r"package\s+itself\s+needs\s+only\s+([^;.]*)", page.read_text())
        assert sentence is not None, page.name
        assert set(re.findall(r"`([\w.-]+)`", sentence[1])) == names, f"{page.name}: {sentence[0]}"


def test_getting_started_fastapi(mw_client: Client) -> None:
    from docs_src.getting_started.fastapi_app import app

    client = mw_client(app)
    home, health = client.get("/"), client.get("/health")
    assert home.json() == {"hello": "world"}
    assert home.headers["X-Server"] == "starlette_mw"
    assert "X-Server" not in health.headers  # excluded
    for response in (home, health):
        assert float(response.headers["X-Process-Time"]) > 0
        assert_server_timing(response, "app")


def test_decorator_on_app(mw_client: Client) -> None:
    from docs_src.decorator.app_decorator import add_process_time_header, app

    assert callable(add_process_time_header)  # the decorator returns the function unchanged
    response = mw_client(app).get("/")
    assert response.text == "home"
    assert float(response.headers["X-Process-Time"]) > 0


def test_decorator_on_an_existing_app(mw_client: Client) -> None:
    from docs_src.decorator.existing_app import app

    client = mw_client(app)
    assert client.get("/").headers["X-Server"] == "starlette"
    assert "X-Server" not in client.get("/health").headers


@pytest.mark.parametrize(
    ("path", "tagged"),
    [
        ("/api", True),  # "/api/*" is /api and everything under it
        ("/api/items/3", True),
        ("/apix", False),
        ("/api/health", False),  # exclude wins over include
        ("/users/42", True),  # Starlette's path syntax, with its convertor
        ("/users/bob", False),
        ("/v2/anything", True),  # the regular expression matches the whole path
        ("/x/v2/anything", False),
        ("/", False),
    ],
)
def test_path_filters(mw_client: Client, path: str, tagged: bool) -> None:
    from docs_src.decorator.path_filters import api, app

    response = mw_client(app).get(path)
    assert response.text == path
    assert ("X-Tagged" in response.headers) is tagged
    assert api.matches(path) is (path in {"/api", "/api/items/3"})


def test_http_middleware_subclass(mw_client: Client) -> None:
    from docs_src.decorator.subclass import app

    client = mw_client(app)
    assert client.get("/", headers={"X-Request-Id": "r-1"}).headers["X-Request-Id"] == "r-1"
    assert "X-Request-Id" not in client.get("/health").headers


def test_stack_command_prints_what_the_page_shows() -> None:
    shown = (DOCS_SRC / "order" / "stack_output.txt").read_text()
    printed = subprocess.run(
        [sys.executable, "-m", "starlette_mw", "stack", "examples.process_time:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == shown


def test_describe(capsys: pytest.CaptureFixture[str]) -> None:
    sys.modules.pop("docs_src.order.describe_app", None)  # it prints on import
    import docs_src.order.describe_app  # noqa: F401

    first, rest = capsys.readouterr().out.split("\n", 1)
    assert first == "('add_server_header', 'add_process_time_header')"
    assert rest == (DOCS_SRC / "order" / "stack_output.txt").read_text()


def test_timing_headers(mw_client: Client) -> None:
    from docs_src.timing.handler_metrics import app

    response = mw_client(app).get("/users")
    assert response.json() == ["alice", "bob"]
    assert re.fullmatch(r"\d+\.\d{6}", response.headers["X-Process-Time"])
    assert re.fullmatch(
        r'app;dur=\d+\.\d{3}, db;dur=\d+\.\d{3};desc="load users", cache;desc="miss"', response.headers["Server-Timing"]
    )
    assert response.headers["Timing-Allow-Origin"] == ORIGIN
    assert [(metric.name, metric.description) for metric in server_timing(response)] == [
        ("app", None),
        ("db", "load users"),
        ("cache", "miss"),
    ]


def test_cors_preset(mw_client: Client) -> None:
    from docs_src.cors.preset import app

    client = mw_client(app)
    answer = preflight(client, "/api/profile", origin=ORIGIN, method="PUT", headers=["Authorization"])
    assert_cors(answer, ORIGIN, credentials=True, method="PUT", request_headers=["Authorization"])
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert_cors(preflight(client, "/api/profile", origin="https://evil.example", method="PUT"), None)
    assert_cors(client.get("/api/profile", headers={"Origin": ORIGIN}), ORIGIN, credentials=True, vary=True)


def test_cors_policies(mw_client: Client) -> None:
    from docs_src.cors.policies import app

    client = mw_client(app)
    anyone = {"Origin": "https://elsewhere.example"}
    assert client.get("/public/prices", headers=anyone).headers["Access-Control-Allow-Origin"] == "*"
    assert_cors(client.get("/api/profile", headers={"Origin": ORIGIN}), ORIGIN, credentials=True)
    assert_cors(client.get("/api/profile", headers=anyone), None)
    untouched = client.get("/status", headers={"Origin": ORIGIN})  # no policy matches: no CORS headers
    assert not [name for name in untouched.headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("url", "method", "location", "status"),
    [
        ("http://example.com/new", "GET", "https://example.com/new", 301),
        ("https://www.example.com/about?x=1", "GET", "https://example.com/about?x=1", 301),
        ("https://example.com/old", "GET", "/new", 301),
        ("https://example.com/old", "POST", "/new", 308),
        ("https://example.com/old/", "GET", "/new", 301),  # a rule that matches the other form: one redirect
        ("https://example.com/blog/hello", "GET", "/posts/hello", 301),
        ("https://example.com/docs/a/b", "GET", "/manual/a/b", 302),
        ("https://example.com/u/12", "GET", "/users/12", 301),
        ("https://example.com/gone", "GET", "/archive/gone", 301),  # the app answers 404 there
        ("https://example.com/about/", "GET", "/about", 301),  # trailing_slash="strip"
        (
            "https://example.com/api/batch/class_based/?question=why",
            "GET",
            "/redirected_endpoint?q=why&user=unknown",
            301,
        ),
    ],
)
def test_redirect_rules(mw_client: Client, url: str, method: str, location: str, status: int) -> None:
    from docs_src.redirects.rules import app

    response = mw_client(app).request(method, url)
    assert_redirect(response, location, status=status)


def test_redirect_rules_gone_and_no_redirect(mw_client: Client) -> None:
    from docs_src.redirects.rules import app

    client = mw_client(app)
    assert client.get("https://example.com/old-feed.xml").status_code == 410
    about = client.get("https://example.com/about")  # the app has the route: if_not_found does not apply
    assert (about.status_code, about.text) == (200, "/about")


def test_redirects_with_cors_outside(mw_client: Client) -> None:
    from docs_src.redirects.with_cors import app

    client = mw_client(app)
    # CORS answers the preflight for the old path, and its headers are on the redirect.
    assert_cors(preflight(client, "/v1/items", origin=ORIGIN, method="PUT"), ORIGIN, credentials=True, method="PUT")
    redirect = client.get("/v1/items", headers={"Origin": ORIGIN})
    assert_redirect(redirect, "/v2/items", status=301)
    assert_cors(redirect, ORIGIN, credentials=True)


def test_pytest_plugin_example(pytester: pytest.Pytester) -> None:
    # Run as the page says: myapp.py and test_middleware.py side by side, then `pytest`.
    for name in ("myapp.py", "test_middleware.py"):
        (pytester.path / name).write_text((DOCS_SRC / "pytest_plugin" / name).read_text())
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)


def test_pytest_plugin_example_needs_only_the_pytest_extra() -> None:
    # The page says `pip install 'starlette-mw[pytest]'` is enough: every module the two files
    # import is the standard library's, the other file's, or a distribution that the package or
    # its `pytest` extra requires by name (httpx is not one: the extra brings httpx2).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {"starlette-mw"} | {
        re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        for requirement in [*project["dependencies"], *project["optional-dependencies"]["pytest"]]
    }
    providers = importlib.metadata.packages_distributions()
    for name in ("myapp.py", "test_middleware.py"):
        tree = ast.parse((DOCS_SRC / "pytest_plugin" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in {"__future__", "myapp", "starlette_mw"}:
                    continue
                distributions = {distribution.lower() for distribution in providers.get(top, [])}
                assert distributions & required, f"{name} imports {module}: not from `starlette-mw[pytest]`"


FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda page: page.name)
def test_every_python_sample_in_the_docs_is_a_tested_file(page: Path) -> None:
    # A page shows Python only by including a file; the tests above (and tests/test_examples.py)
    # run each file it may include.
    for language, body in FENCE.findall(page.read_text()):
        if language == "python":
            included = re.fullmatch(r'--8<-- "((?:docs_src|examples)/[\w/]+\.py)"\n', body)
            assert included is not None, (
                f"{page.name} shows Python that is not a file of docs_src/ or examples/:\n{body}"
            )


def test_every_python_sample_in_the_readme_is_a_tested_file() -> None:
    # PyPI shows the README without includes, so its Python blocks are copies: of files tested here.
    files = {path.read_text() for path in DOCS_SRC.rglob("*.py")}
    for language, body in FENCE.findall((ROOT / "README.md").read_text()):
        if language == "python":
            assert body in files, f"This README block is not a file under docs_src/:\n{body}"


# The API reference's examples, as the page shows them: each `::: starlette_mw.x` entry's
# docstring (read with griffe, as mkdocstrings reads it) must hold an example, and each example
# runs, with the names that docs/reference.md says the examples assume.
REFERENCE_ENTRIES = re.findall(r"^::: starlette_mw\.([\w.]+)$", (ROOT / "docs" / "reference.md").read_text(), re.M)


def reference_docstring(entry: str) -> str:
    import griffe

    found: Any = griffe.load("starlette_mw", search_paths=[str(ROOT)])[entry]
    if found.is_module:  # a module of the same name (`timing`, `describe`): the entry shows its function
        found = found[entry.rsplit(".", 1)[-1]]
    return found.docstring.value if found.docstring is not None else ""


def code_blocks(docstring: str) -> list[str]:
    """The indented (Markdown) code blocks of a docstring, doctests left out."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    previous = ""
    for line in docstring.splitlines():
        if line.startswith("    ") or (line == "" and current is not None):
            if current is None:
                if previous != "":
                    continue  # an indented line that continues a paragraph is not code
                current = []
                blocks.append(current)
            current.append(line[4:])
        else:
            current = None
        previous = line
    return ["\n".join(block).strip() + "\n" for block in blocks if not block[0].startswith(">>>")]


async def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


async def load_users() -> list[str]:
    return ["alice", "bob"]


def render_users(rows: list[str]) -> Response:
    return JSONResponse(rows)


def example_names() -> dict[str, Any]:
    import starlette_mw.testing

    names: dict[str, Any] = {name: getattr(starlette_mw, name) for name in starlette_mw.__all__}
    names |= {name: getattr(starlette_mw.testing, name) for name in starlette_mw.testing.__all__}
    names |= {
        "starlette_mw": starlette_mw,
        "re": re,
        "time": time,
        "Starlette": Starlette,
        "FastAPI": FastAPI,
        "Middleware": Middleware,
        "GZipMiddleware": GZipMiddleware,
        "Route": Route,
        "Request": Request,
        "Response": Response,
        "PlainTextResponse": PlainTextResponse,
        "JSONResponse": JSONResponse,
        "TestClient": TestClient,
        "homepage": homepage,
        "routes": [Route("/", homepage)],
        "APIRouter": APIRouter,
        "load_users": load_users,
        "render_users": render_users,
    }
    return names


def run_in_an_endpoint(code: CodeType, names: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        ran = eval(code, names | {"request": request, "started": time.perf_counter()})
        if inspect.iscoroutine(ran):
            await ran
        return PlainTextResponse("ran")

    app = starlette_mw.App(routes=[Route("/", endpoint)], middleware=[Middleware(starlette_mw.TimingMiddleware)])
    return TestClient(app).get("/")


@pytest.mark.parametrize("entry", REFERENCE_ENTRIES)
def test_every_api_reference_entry_has_an_example_that_runs(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docstring = reference_docstring(entry)
    doctests = doctest.DocTestParser().get_doctest(docstring, example_names(), entry, None, 0)
    blocks = code_blocks(docstring)
    assert doctests.examples or blocks, f"The API reference shows no example for starlette_mw.{entry}."
    if doctests.examples:
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        report: list[str] = []
        runner.run(doctests, out=report.append)
        assert runner.failures == 0, "".join(report)
    # A block runs in an app's module (`app` is a FastAPI app of `routes`) and then serves a request; one
    # that uses `request` runs inside an endpoint behind TimingMiddleware, and records a metric.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "redirects.toml").write_text('[[redirects]]\nsource = "/old"\ntarget = "/new"\n')
    for block in blocks:
        code = compile(block, f"<example of {entry}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        names = example_names() | {"app": starlette_mw.install(FastAPI(routes=[Route("/", homepage)]))}
        if "request" in code.co_names:
            response = run_in_an_endpoint(code, names)
            assert response.text == "ran"
            assert len(server_timing(response)) > 1, f"{block} recorded no metric"
        else:
            exec(code, names)
            response = TestClient(names["app"]).get("/")
            assert response.status_code in {200, 404}, block
