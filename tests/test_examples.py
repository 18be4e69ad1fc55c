"""`examples/process_time.py`, run the way its docstring says: under uvicorn."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from starlette.types import ASGIApp

from examples.process_time import app
from starlette_mw import describe

LiveServer = Callable[[ASGIApp], str]


def test_process_time_example_under_uvicorn(mw_live_server: LiveServer) -> None:
    with httpx.Client(base_url=mw_live_server(app)) as http:
        home = http.get("/", headers={"Accept-Encoding": "gzip"})
        health = http.get("/health", headers={"Accept-Encoding": "gzip"})

    assert home.status_code == 200
    assert home.json() == {"hello": "world"}
    assert float(home.headers["X-Process-Time"]) > 0
    assert home.headers["X-Server"] == "starlette_mw"

    assert health.status_code == 200
    assert health.text == "ok"
    assert float(health.headers["X-Process-Time"]) > 0
    assert "X-Server" not in health.headers

    # GZipMiddleware leaves bodies under its minimum_size (500 bytes) alone, and both are tiny.
    assert "Content-Encoding" not in home.headers
    assert "Content-Encoding" not in health.headers


def test_process_time_example_stack() -> None:
    # GZipMiddleware from the constructor is innermost; the decorator registered last is outermost.
    assert describe(app).layers == (
        "ErrorResponseMiddleware",
        "add_server_header",
        "add_process_time_header",
        "GZipMiddleware",
        "ExceptionMiddleware",
        "Router",
    )


def test_timing_example_under_uvicorn(mw_live_server: LiveServer) -> None:
    from examples.timing import FRONT_END
    from examples.timing import app as timing_app

    with httpx.Client(base_url=mw_live_server(timing_app)) as http:
        users = http.get("/users", headers={"Origin": FRONT_END})
        report = http.get("/report")

    assert users.json() == ["alice", "bob"]
    assert float(users.headers["X-Process-Time"]) > 0
    [server_timing] = users.headers.get_list("Server-Timing")
    assert server_timing.startswith("app;dur=")
    assert ", db;dur=" in server_timing and server_timing.endswith(';desc="load users", cache;desc="miss"')
    assert users.headers["Timing-Allow-Origin"] == FRONT_END
    assert users.headers["Access-Control-Expose-Headers"] == "X-Process-Time, Server-Timing"

    assert report.status_code == 500
    assert report.headers["Server-Timing"].startswith("app;dur=")


def test_redirects_example_under_uvicorn(mw_live_server: LiveServer) -> None:
    from examples.redirects import app as redirects_app

    with httpx.Client(base_url=mw_live_server(redirects_app)) as http:
        post = http.get("/blog/hello/", follow_redirects=True)
        assert post.text == "post hello"
        assert [r.headers["location"] for r in post.history] == ["/posts/hello"]  # one hop
        assert http.get("/index.html").headers["location"] == "/"
        assert http.get("/old-feed.xml").status_code == 410
        tutorial = http.get("/api/batch/class_based/", params={"question": "why"}, follow_redirects=True)
        assert tutorial.json() == {"q": "why", "user": "unknown"}
        assert tutorial.history[0].headers["location"] == "/redirected_endpoint?q=why&user=unknown"
        assert http.get("/", headers={"Host": "www.localhost:8000"}).headers["location"] == "http://localhost:8000/"
        assert http.get("/nowhere/").status_code == 404  # no route there, so no slash redirect


def test_cors_example_under_uvicorn(mw_live_server: LiveServer) -> None:
    from examples.cors import FRONT_END
    from examples.cors import app as cors_app

    with httpx.Client(base_url=mw_live_server(cors_app)) as http:
        prices = http.get("/public/prices", headers={"Origin": "https://anyone.example"})
        profile = http.get("/api/profile", headers={"Origin": FRONT_END, "Cookie": "session=ada"})
        stranger = http.get("/api/profile", headers={"Origin": "https://anyone.example"})
        preflight = http.options(
            "/api/profile",
            headers={
                "Origin": FRONT_END,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        failure = http.get("/api/fail", headers={"Origin": FRONT_END})

    assert prices.json() == {"EUR": 1.0, "USD": 1.08}
    assert prices.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in prices.headers

    assert profile.json() == {"user": "ada"}
    assert profile.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert profile.headers["Access-Control-Allow-Credentials"] == "true"
    assert profile.headers["Access-Control-Expose-Headers"] == "X-Process-Time, Server-Timing"
    assert profile.headers["Timing-Allow-Origin"] == FRONT_END

    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert stranger.headers["Vary"] == "Origin"
    assert preflight.status_code == 200
    assert failure.status_code == 500
    assert failure.headers["Access-Control-Allow-Origin"] == FRONT_END
