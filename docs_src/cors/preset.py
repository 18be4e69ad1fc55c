from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware


async def profile(request: Request) -> Response:
    return JSONResponse({"user": "alice"})


routes = [Route("/api/profile", profile, methods=["GET", "PUT"])]
app = App(routes=routes)
app.add_middleware(CORSMiddleware, preset="first-party", allow_origins=["https://app.example.com"])
