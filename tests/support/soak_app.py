"""The app the soak test loads under uvicorn in a process of its own: the package's whole stack.

`python -m uvicorn --app-dir tests/support --factory soak_app:make_app`. Its routes answer plainly, stream,
run background tasks, redirect through 1,000 rules and fail on purpose; `/stats` reports what
the background tasks and streams did, and the server's own memory, so the test can check them.
"""

from __future__ import annotations

import gc
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.lowlevel
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import starlette_mw
from starlette_mw import App, CallNext, Redirect, RedirectMiddleware, TimingMiddleware, record_timing

ORIGIN = "http://localhost:3000"
LEGACY = {f"/archive/{n}": f"/posts/{n}" for n in range(1000)}
CHUNKS = 8


def make_app() -> App:
    stats = {"background": 0, "streams_finished": 0}

    async def hello(request: Request) -> Response:
        record_timing(request, "db", 0.0001)
        return PlainTextResponse("hello")

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for index in range(CHUNKS):
                await anyio.lowlevel.checkpoint()
                yield f"chunk {index}\n".encode()
            stats["streams_finished"] += 1

        return StreamingResponse(body(), media_type="text/plain")

    async def background(request: Request) -> Response:
        def done() -> None:
            stats["background"] += 1

        return PlainTextResponse("later", background=BackgroundTask(done))

    async def boom(request: Request) -> Response:
        raise RuntimeError("failing on purpose")

    def report(request: Request) -> Response:  # a plain function: Starlette runs it in a thread
        gc.collect()
        status = Path("/proc/self/status").read_text()
        rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return JSONResponse(
            {**stats, "rss_kib": rss_kib, "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        )

    app = App(
        routes=[
            Route("/", hello),
            Route("/stream", stream),
            Route("/background", background),
            Route("/boom", boom),
            Route("/stats", report),
        ],
        middleware=[
            Middleware(starlette_mw.CORSMiddleware, preset="first-party", allow_origins=[ORIGIN]),
            Middleware(RedirectMiddleware, rules=[Redirect(old, new) for old, new in LEGACY.items()]),
            Middleware(TimingMiddleware, exclude="/stats"),
        ],
    )

    @app.middleware("http")
    async def tag(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["X-Tagged"] = "yes"
        return response

    return app
