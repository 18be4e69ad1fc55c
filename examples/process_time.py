"""FastAPI's tutorial example (an `X-Process-Time` header), ported to plain Starlette.

Run it with:  uvicorn examples.process_time:app
"""

from __future__ import annotations

import time

from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext


async def homepage(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


app = App(
    routes=[Route("/", homepage), Route("/health", health)],
    middleware=[Middleware(GZipMiddleware)],
)


@app.middleware("http")
async def add_process_time_header(request: Request, call_next: CallNext) -> Response:
    start_time = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = str(time.perf_counter() - start_time)
    return response


@app.middleware("http", exclude="/health")
async def add_server_header(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers["X-Server"] = "starlette_mw"
    return response
