"""An app module with a bad middleware option, which `test_registration.py` gives to uvicorn as is.

BAD_CONFIG_ENTRY names where the option is given; importing this module raises there, as a user's
app module would. The test's own process never imports it.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import starlette_mw
from starlette_mw import App, TimingMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


entry = os.environ["BAD_CONFIG_ENTRY"]
app: Starlette
if entry == "App(middleware=[...])":
    app = App(routes=[Route("/", hello)], middleware=[Middleware(TimingMiddleware, precision=9)])
elif entry == "App().add_middleware":
    app = App(routes=[Route("/", hello)])
    app.add_middleware(TimingMiddleware, precision=9)
elif entry == "install(FastAPI()).add_middleware":
    app = starlette_mw.install(FastAPI())
    app.add_middleware(TimingMiddleware, precision=9)
else:
    raise LookupError(f"BAD_CONFIG_ENTRY={entry!r} names no entry point of this module.")
