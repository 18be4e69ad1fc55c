from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import starlette_mw
from starlette_mw import CallNext


async def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


app = starlette_mw.App(routes=[Route("/", homepage)])  # or: class App(MiddlewareMixin, Starlette)


@app.middleware("http")
async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
    start_time = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = str(time.perf_counter() - start_time)
    return response
