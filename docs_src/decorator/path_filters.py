from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext, PathFilter


async def echo(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


app = App(routes=[Route("/{path:path}", echo)])


@app.middleware("http", include=["/api/*", "/users/{id:int}", re.compile(r"/v\d+/.*")], exclude="/api/health")
async def tag(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers["X-Tagged"] = "yes"
    return response


# The same matcher on its own: exclude wins over include.
api = PathFilter(include="/api/*", exclude="/api/health")
