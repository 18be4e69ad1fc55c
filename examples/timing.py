"""Server-Timing that a front end on another origin can read, and X-Process-Time for everyone.

Run it with:  uvicorn examples.timing:app

Then open http://127.0.0.1:8000/users in Chromium's DevTools (Network, Timing) to see the metrics,
or read them from a page on http://localhost:5173 with
`performance.getEntriesByType("resource")[...].serverTiming`.
"""

from __future__ import annotations

import asyncio

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, TimingMiddleware, record_timing, timing

FRONT_END = "http://localhost:5173"


async def load_users() -> list[str]:
    await asyncio.sleep(0.005)  # a database query
    return ["alice", "bob"]


async def users(request: Request) -> Response:
    with timing(request, "db", "load users"):
        names = await load_users()
    record_timing(request, "cache", description="miss")
    return JSONResponse(names)


async def report(request: Request) -> Response:
    raise RuntimeError("the report failed")  # the 500 still carries the timing headers


def internal(request: Request) -> bool:
    """Server-Timing shows the inside of the app: only loopback clients get it here."""
    return request.client is not None and request.client.host in {"127.0.0.1", "::1"}


app = App(  # App puts the headers on the 500 too; for another app, call starlette_mw.install(app)
    routes=[Route("/users", users), Route("/report", report)],
    middleware=[
        Middleware(CORSMiddleware, allow_origins=[FRONT_END], expose_headers=["X-Process-Time", "Server-Timing"]),
        Middleware(TimingMiddleware, timing_allow_origin=FRONT_END, enabled=internal, exclude="/health"),
    ],
)
