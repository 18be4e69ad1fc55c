"""Getting started with FastAPI: save as main.py, run `uvicorn main:app`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

import starlette_mw
from starlette_mw import CallNext, TimingMiddleware

app = FastAPI()
starlette_mw.install(app)  # puts the timing headers on the 500 that Starlette renders, too
app.add_middleware(TimingMiddleware)


@app.get("/")
async def read_root() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@starlette_mw.middleware(app, "http", exclude="/health")
async def add_server_header(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers["X-Server"] = "starlette_mw"
    return response
