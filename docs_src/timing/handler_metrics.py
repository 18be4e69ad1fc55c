from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, TimingMiddleware, record_timing, timing


class Database:
    async def fetch_users(self) -> list[str]:
        await asyncio.sleep(0.004)  # a query
        return ["alice", "bob"]


db = Database()


async def users(request: Request) -> Response:
    with timing(request, "db", "load users"):  # also `async with`, or `@timing(request, "db")`
        rows = await db.fetch_users()
    record_timing(request, "cache", description="miss")  # or a duration: record_timing(request, "x", 0.004)
    return JSONResponse(rows)


app = App(routes=[Route("/users", users)])  # or any Starlette/FastAPI app passed to starlette_mw.install(app)
app.add_middleware(TimingMiddleware, timing_allow_origin="https://app.example.com")
