"""Middleware on a FastAPI `APIRouter` and on one of its routes (docs/routers.md).

Run it with:  uvicorn examples.admin_router:app
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

import starlette_mw
from starlette_mw import CallNext, TimingMiddleware

app = FastAPI()
admin = APIRouter(prefix="/admin")


@admin.get("/users")
async def users() -> list[str]:
    return ["ada"]


@admin.get("/health")
async def health() -> str:
    return "ok"


@app.get("/")
async def home() -> str:
    return "home"


app.include_router(admin)


@starlette_mw.middleware(admin, "http", exclude="/admin/health")
async def require_admin(request: Request, call_next: CallNext) -> Response:
    if request.headers.get("X-Role") != "admin":
        return PlainTextResponse("Forbidden", status_code=403)
    return await call_next(request)


starlette_mw.add_middleware(admin.routes[0], TimingMiddleware)  # one route: /admin/users
