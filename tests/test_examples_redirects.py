"""`examples/redirects.py`, run the way its docstring says: under uvicorn."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from starlette.types import ASGIApp

from examples.redirects import app

LiveServer = Callable[[ASGIApp], str]


def test_redirects_example_under_uvicorn(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server(app)) as http:
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
