from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import starlette_mw
from starlette_mw import CallNext


async def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


routes = [Route("/", homepage), Route("/health", health)]
app = Starlette(routes=routes)


@starlette_mw.middleware(app, "http", exclude="/health")
async def add_server_header(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers["X-Server"] = "starlette"
    return response
