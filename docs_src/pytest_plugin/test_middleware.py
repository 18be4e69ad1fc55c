from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

from myapp import make_app

from starlette_mw.testing import assert_cors, assert_redirect, assert_server_timing, preflight


def test_order(mw_client: Callable[..., Any], mw_trace: Callable[..., Any]) -> None:
    app = make_app()
    trace = mw_trace(app)  # before the app's first request
    mw_client(app).get("/")
    inward = ["CORSMiddleware", "TimingMiddleware", "RedirectMiddleware", "add_process_time"]  # last registered first
    assert trace.last == [*inward, "endpoint", *reversed(inward)]


def test_headers(mw_client: Callable[..., Any]) -> None:
    client = mw_client(make_app())
    assert_redirect(client.get("/old"), "/new", status=301)  # a POST would get 308
    assert_redirect(client.post("/old"), "/new", status=308)
    assert_server_timing(client.get("/users"), "app", "db", descriptions={"db": "load users"})
    response = preflight(client, "/api", origin="https://app.example.com", method="PUT", headers=["X-Key"])
    # method= / request_headers=: what the browser checks before it sends the real request
    assert_cors(response, "https://app.example.com", credentials=True, method="PUT", request_headers=["X-Key"])


def test_for_real(mw_live_server: Callable[..., str]) -> None:
    base_url = mw_live_server(make_app())  # real uvicorn, so any HTTP client reaches it
    with urllib.request.urlopen(base_url + "/health") as response:
        assert response.status == 200
        assert "X-Process-Time" in response.headers
