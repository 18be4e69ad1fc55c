from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware, CORSPolicy


async def prices(request: Request) -> Response:
    return JSONResponse({"EUR": 1.0})


async def profile(request: Request) -> Response:
    return JSONResponse({"user": "alice"})


async def status(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = App(routes=[Route("/public/prices", prices), Route("/api/profile", profile), Route("/status", status)])
app.add_middleware(
    CORSMiddleware,
    policies={
        "/public/*": CORSPolicy.from_preset("public"),
        "/api/*": CORSPolicy.from_preset("first-party", allow_origins=["https://app.example.com"]),
    },
)
