"""CORS presets per path: an open read-only API under /public, the app's own front end on /api.

Run it with:  uvicorn examples.cors:app
Set FRONT_END to the origin of your front end (default: http://localhost:5173, Vite's).
"""

from __future__ import annotations

import os

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_mw import App, CORSMiddleware, CORSPolicy, TimingMiddleware

FRONT_END = os.environ.get("FRONT_END", "http://localhost:5173")


async def prices(request: Request) -> Response:
    return JSONResponse({"EUR": 1.0, "USD": 1.08})


async def profile(request: Request) -> Response:
    if request.method == "PATCH":
        return JSONResponse(await request.json())
    return JSONResponse({"user": request.cookies.get("session", "anonymous")})


async def fail(request: Request) -> Response:
    raise RuntimeError("the database is down")


app = App(
    routes=[
        Route("/public/prices", prices),
        Route("/api/profile", profile, methods=["GET", "PATCH"]),
        Route("/api/fail", fail),
    ],
    middleware=[
        Middleware(
            CORSMiddleware,
            policies={
                "/public/*": CORSPolicy.from_preset("public"),
                "/api/*": CORSPolicy.from_preset("first-party", allow_origins=[FRONT_END]),
            },
        ),
        # Its X-Process-Time and Server-Timing are exposed to the origins CORS allows.
        Middleware(TimingMiddleware),
    ],
)
