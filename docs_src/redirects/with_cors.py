from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware, Redirect, RedirectMiddleware


async def items(request: Request) -> Response:
    return JSONResponse(["apple", "pear"])


routes = [Route("/v2/items", items, methods=["GET", "PUT"])]
app = App(
    routes=routes,
    middleware=[
        Middleware(CORSMiddleware, preset="first-party", allow_origins=["https://app.example.com"]),
        Middleware(RedirectMiddleware, rules=[Redirect("/v1/items", "/v2/items")]),
    ],
)
