"""Getting started with Starlette: save as main.py, run `uvicorn main:app`."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext


async def homepage(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


app = App(routes=[Route("/", homepage)])


@app.middleware("http")
async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
    start_time = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = str(time.perf_counter() - start_time)
    return response
