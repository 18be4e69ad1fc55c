from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, CallNext, HTTPMiddleware


class RequestIdMiddleware(HTTPMiddleware):
    """Overrides `dispatch` as a `BaseHTTPMiddleware` subclass would."""

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.headers.get("X-Request-Id", "none")
        return response


async def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


app = App(
    routes=[Route("/", homepage), Route("/health", homepage)],
    middleware=[Middleware(RequestIdMiddleware, exclude="/health")],
)
