"""The pytest plugin, run as a user runs it: a separate pytest process on a test file of theirs."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.filterwarnings("error")

# A user's app: a lifespan, a redirect, a failing endpoint, the package's and Starlette's middleware.
APP = """
import contextlib

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext, TimingMiddleware, record_timing

ORIGIN = "https://app.example.com"


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan"}


async def home(request: Request) -> Response:
    record_timing(request, "db", 0.001, "query")
    return PlainTextResponse(request.state.greeting)


async def old(request: Request) -> Response:
    return RedirectResponse("/new", status_code=308)


async def boom(request: Request) -> Response:
    raise RuntimeError("endpoint failed")


def make_app() -> App:
    app = App(
        routes=[Route("/", home), Route("/old", old), Route("/boom", boom)],
        middleware=[Middleware(TimingMiddleware)],
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET", "PUT"], expose_headers=["Server-Timing"]
    )

    @app.middleware("http")
    async def add_process_time(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    return app
"""


def write_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(user_app=APP)


def test_the_fixtures_as_a_user_writes_tests_with_them(pytester: pytest.Pytester) -> None:
    write_app(pytester)
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import httpx
            import pytest

            from starlette_mw.testing import assert_cors, assert_redirect, assert_server_timing, preflight
            from user_app import ORIGIN, make_app


            @pytest.fixture
            def client():
                # A fixture of the user's own with the usual name: the plugin's are all mw_*.
                return "the user's own client"


            def test_client(mw_client, client):
                assert client == "the user's own client"
                http = mw_client(make_app())
                response = http.get("/", headers={"Origin": ORIGIN})
                assert response.text == "hello from the lifespan"  # the lifespan ran
                assert_server_timing(response, "app", "db", descriptions={"db": "query"})
                assert_cors(response, ORIGIN, expose=["Server-Timing"], vary=True)
                assert_redirect(http.get("/old"), "/new", status=308)  # not followed
                with pytest.raises(RuntimeError, match="endpoint failed"):
                    http.get("/boom")


            def test_client_options(mw_client):
                http = mw_client(make_app(), raise_server_exceptions=False, follow_redirects=True)
                assert http.get("/boom").status_code == 500
                assert http.get("/old").url.path == "/new"


            def test_preflight(mw_client):
                http = mw_client(make_app())
                assert_cors(preflight(http, "/", origin=ORIGIN, method="PUT"), ORIGIN)
                assert_cors(preflight(http, "/", origin="https://evil.example", method="PUT"), None)


            @pytest.mark.anyio
            async def test_async_client(mw_async_client):
                async with mw_async_client(make_app(), raise_server_exceptions=False) as http:
                    response = await http.get("/")
                    assert response.text == "hello from the lifespan"
                    assert_server_timing(response, "app", "db")
                    assert_redirect(await http.get("/old"), "/new")
                    assert (await http.get("/boom")).status_code == 500


            def test_live_server(mw_live_server):
                base_url = mw_live_server(make_app())
                assert base_url.startswith("http://127.0.0.1:")
                response = httpx.get(base_url + "/")
                assert response.text == "hello from the lifespan"
                assert_server_timing(response, "app", "db")


            def test_trace(mw_client, mw_trace):
                app = make_app()
                trace = mw_trace(app)
                http = mw_client(app)
                http.get("/")
                assert trace.last == [
                    "add_process_time", "CORSMiddleware", "TimingMiddleware", "endpoint",
                    "TimingMiddleware", "CORSMiddleware", "add_process_time",
                ]
                preflight(http, "/", origin=ORIGIN, method="PUT")
                assert trace.last == ["add_process_time", "CORSMiddleware", "CORSMiddleware", "add_process_time"]
            """
        )
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=7)  # test_async_client on asyncio and trio
    assert "Warning" not in result.stdout.str()


def test_failing_assertions_say_what_was_expected_and_what_came_back(pytester: pytest.Pytester) -> None:
    write_app(pytester)
    pytester.makepyfile(
        test_failing=textwrap.dedent(
            """
            from starlette_mw.testing import assert_cors, assert_redirect, assert_server_timing
            from user_app import make_app


            def test_redirect(mw_client):
                assert_redirect(mw_client(make_app()).get("/old"), "/newer", status=301)


            def test_server_timing(mw_client):
                assert_server_timing(mw_client(make_app()).get("/"), "app", "cache")


            def test_cors(mw_client):
                response = mw_client(make_app()).get("/", headers={"Origin": "https://app.example.com"})
                assert_cors(response, "https://other.example", credentials=True)
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    for expected in (
        "E           AssertionError: Expected a redirect to '/newer' with status 301; "
        "got status 308 with Location '/new'.\n"
        "E           The response was 308, with headers:\n",
        "E             location: /new\n",
        "E           AssertionError: Expected Server-Timing metrics ['app', 'cache'], got ['app', 'db'].\n",
        "E           AssertionError: CORS headers: expected Access-Control-Allow-Origin 'https://other.example', "
        "got ['https://app.example.com']; expected credentials allowed, got Access-Control-Allow-Credentials None.\n",
    ):
        assert expected in output


def test_dash_p_no_switches_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
        def test_uses_the_plugin(mw_client):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:starlette_mw", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mw_client' not found*"])
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0


def test_collection_imports_no_server_and_no_http_client(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_collection_finish(session):
            heavy = ("uvicorn", "httpx", "httpx2", "starlette.testclient")
            heavy = sorted(name for name in heavy if name in sys.modules)
            print("HEAVY MODULES:", heavy)
        """
    )
    pytester.makepyfile(
        test_light="""
        def test_listed(mw_client, mw_live_server, mw_trace, mw_async_client):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--collect-only", "-s", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["HEAVY MODULES: []"])
    assert "starlette_mw.testing.pytest_plugin" in pytester.runpytest_subprocess("--trace-config", "--co").stdout.str()


@pytest.mark.parametrize(
    ("conftest", "client_module"),
    [
        pytest.param("", "httpx2", id="httpx2"),
        # What Python does for a package that is not installed: the import raises.
        pytest.param("import sys\nsys.modules['httpx2'] = None\n", "httpx", id="httpx only"),
    ],
)
def test_whichever_client_starlette_uses_without_warnings(
    pytester: pytest.Pytester, conftest: str, client_module: str
) -> None:
    write_app(pytester)
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_clients=textwrap.dedent(
            f"""
            import pytest

            from starlette_mw.testing import assert_server_timing
            from user_app import make_app


            def test_sync(mw_client):
                response = mw_client(make_app()).get("/")
                assert type(response).__module__.split(".")[0] == {client_module!r}
                assert_server_timing(response, "app", "db")


            @pytest.mark.anyio
            @pytest.mark.parametrize("anyio_backend", ["asyncio"])
            async def test_async(mw_async_client, anyio_backend):
                async with mw_async_client(make_app()) as http:
                    response = await http.get("/")
                assert type(response).__module__.split(".")[0] == {client_module!r}
                assert_server_timing(response, "app", "db")
            """
        )
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
