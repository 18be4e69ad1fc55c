"""The whole stack in an app that Sentry monitors, under uvicorn: Sentry's asyncio integration
wraps every task's coroutine, the app's task behind `HTTPMiddleware` included.

Was a bug: `HTTPMiddleware` stepped the app's coroutine as its task before the task first ran,
which a wrapped coroutine does not allow, so every request whose endpoint waited on I/O hung.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from sentry_app import ORIGIN
from uvicorn_child import uvicorn_process


def test_requests_through_the_stack_with_sentry(tmp_path: Path) -> None:
    log = tmp_path / "uvicorn.log"
    with uvicorn_process("sentry_app:make_app", log) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
        factory = http.get("/task-factory").text
        moved = http.get("/old", headers={"Origin": ORIGIN}, follow_redirects=True)
        streamed = http.get("/stream", headers={"Origin": ORIGIN})

    assert "sentry" in factory  # the integration is on: the premise of the test
    assert [r.status_code for r in moved.history] == [301]
    assert (moved.status_code, moved.text) == (200, "hello")
    assert moved.headers["x-tagged"] == "yes"
    assert moved.headers["access-control-allow-origin"] == ORIGIN
    assert moved.headers["server-timing"].startswith("app;dur=")
    assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
    assert "Traceback" not in log.read_text()
