"""Test clients with the app's lifespan run: Starlette's TestClient and an async httpx client."""

from __future__ import annotations

import math
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["async_client", "httpx_module", "testclient_class"]

# Starlette 1.x warns when its TestClient falls back to httpx; using whichever is installed is
# the point here, so that choice is not the user's warning to see.
_FALLBACK_WARNING = "Using `httpx` with `starlette.testclient` is deprecated"


def testclient_class() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FALLBACK_WARNING)
        from starlette.testclient import TestClient
    return TestClient


def httpx_module() -> ModuleType:
    """httpx2 if it is installed (as Starlette's TestClient prefers), otherwise httpx."""
    try:
        import httpx2
    except ModuleNotFoundError:
        import httpx

        return httpx
    return httpx2


SHUTDOWN_TIMEOUT = 10.0


class LifespanFailed(RuntimeError):
    """The app answered its lifespan startup or shutdown with `lifespan.*.failed`."""


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[dict[str, Any]]:
    """Run the app's lifespan startup, yield its state, then run its shutdown, as a server does.

    An app that does not take lifespan events (it raises on them) runs without, as under uvicorn's
    default `lifespan="auto"`.
    """
    state: dict[str, Any] = {}
    to_app, app_inbox = anyio.create_memory_object_stream[Message](math.inf)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](math.inf)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}

    async def run() -> None:
        try:
            await app(scope, app_inbox.receive, app_outbox.send)
        except Exception:
            await app_outbox.send({"type": "lifespan.unsupported"})
        else:
            # An app may simply return from the lifespan scope: uvicorn then goes on without one.
            await app_outbox.send({"type": "lifespan.returned"})

    async def step(event: str) -> bool:
        """Send the event; False if the app does not take lifespan events."""
        await to_app.send({"type": f"lifespan.{event}"})
        message = await from_app.receive()
        if message["type"] == f"lifespan.{event}.failed":
            raise LifespanFailed(f"The app's lifespan {event} failed: {message.get('message', '')}")
        return bool(message["type"] == f"lifespan.{event}.complete")

    # Nothing may propagate out of the task group: anyio would wrap it in an ExceptionGroup, and a
    # failed assertion in the test's `async with` block would no longer read as one.
    error: BaseException | None = None
    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        try:
            supported = await step("startup")
        except LifespanFailed as failed:
            error, supported = failed, False
        else:
            try:
                yield state
            except GeneratorExit:
                raise
            except BaseException as raised:
                error = raised
        if supported:
            # Shielded, so that a cancelled test still shuts the app down; bounded, so that an app
            # that never answers cannot hang the run.
            with anyio.move_on_after(SHUTDOWN_TIMEOUT, shield=True) as shutdown:
                try:
                    await step("shutdown")
                except LifespanFailed as failed:
                    error = error or failed
            if shutdown.cancelled_caught and error is None:
                error = LifespanFailed(f"The app's lifespan shutdown did not finish within {SHUTDOWN_TIMEOUT} s.")
        tasks.cancel_scope.cancel()
    if error is not None:
        raise error


def _with_state(app: ASGIApp, state: dict[str, Any]) -> ASGIApp:
    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        # Each request gets a shallow copy of the lifespan state, as servers give it.
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    return with_state


@asynccontextmanager
async def async_client(
    app: ASGIApp,
    *,
    raise_server_exceptions: bool = True,
    follow_redirects: bool = False,
    base_url: str = "http://testserver",
    run_lifespan: bool = True,
    **options: Any,
) -> AsyncIterator[Any]:
    """An httpx `AsyncClient` calling `app` in-process through `ASGITransport`, with its lifespan run."""
    http = httpx_module()
    async with AsyncExitStack() as stack:
        if run_lifespan:
            app = _with_state(app, await stack.enter_async_context(lifespan(app)))
        transport = http.ASGITransport(app=app, raise_app_exceptions=raise_server_exceptions)
        client = http.AsyncClient(transport=transport, base_url=base_url, follow_redirects=follow_redirects, **options)
        yield await stack.enter_async_context(client)
