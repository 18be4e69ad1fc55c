"""An app monitored by Sentry, which `test_sentry.py` loads under uvicorn in a process of its own.

`sentry_sdk.init()` with its asyncio integration puts a task factory on the running loop that
runs each task's coroutine inside one of its own, and by default it patches Starlette and httpx
too; in a process of its own, none of that reaches the other tests. Without a DSN, Sentry sends
nothing anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import starlette_mw
from starlette_mw import App, CallNext, Redirect, RedirectMiddleware, TimingMiddleware

ORIGIN = "http://localhost:3000"


@contextlib.asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[None]:
    # Imported here, so that the test's process, which imports ORIGIN, never loads Sentry.
    import sentry_sdk
    from sentry_sdk.integrations.asyncio import AsyncioIntegration

    sentry_sdk.init(integrations=[AsyncioIntegration()])  # as Sentry's docs say: with the loop running
    yield


async def hello(request: Request) -> Response:
    await asyncio.sleep(0.01)  # a real wait, which the app's task must see through
    return PlainTextResponse("hello")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            await asyncio.sleep(0.001)
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks())


async def task_factory(request: Request) -> Response:
    factory = asyncio.get_running_loop().get_task_factory()
    return PlainTextResponse(getattr(factory, "__qualname__", repr(factory)))


async def tag(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers["X-Tagged"] = "yes"
    return response


def make_app() -> App:
    app = App(
        routes=[Route("/", hello), Route("/stream", stream), Route("/task-factory", task_factory)],
        lifespan=lifespan,
        middleware=[
            Middleware(starlette_mw.CORSMiddleware, preset="strict", allow_origins=[ORIGIN]),
            Middleware(RedirectMiddleware, rules=[Redirect("/old", "/")]),
            Middleware(TimingMiddleware),
        ],
    )
    app.middleware("http")(tag)
    return app
