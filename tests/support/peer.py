"""A hand-written server side for ASGI tests that need exact control of receive and send, and
the parameters that run a test against BaseHTTPMiddleware and HTTPMiddleware side by side."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Awaitable, Callable

import anyio
import pytest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Scope

from starlette_mw import CallNext, HTTPMiddleware

# Tests parametrized over both run Starlette's class as the reference and ours side by side.
Middlewares = type[BaseHTTPMiddleware]
MIDDLEWARES = [
    pytest.param(BaseHTTPMiddleware, id="starlette"),
    pytest.param(HTTPMiddleware, id="starlette_mw"),
]


async def call_asgi(app: ASGIApp, scope: Scope) -> list[Message]:
    """Every message `app` sends for one request with no body on `scope`, called as plain ASGI."""
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages


async def passthrough(request: Request, call_next: CallNext) -> Response:
    return await call_next(request)


def alive_after(main: Callable[[], Awaitable[None]], backend: str, refs: list[weakref.ref[object]]) -> list[bool]:
    """Run `main` on `backend` with the cycle collector off; then, for each of `refs` (which `main`
    fills), whether its object is still alive: what only the collector would have freed."""
    gc.collect()
    gc.disable()
    try:
        anyio.run(main, backend=backend)
        return [ref() is not None for ref in refs]
    finally:
        gc.enable()


# A deadlock should fail its test quickly rather than wait for pytest-timeout; never reached otherwise.
DEADLOCK = 5


def http_scope(
    path: str = "/", method: str = "GET", extensions: tuple[str, ...] = (), spec_version: str = "2.4"
) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": {name: {} for name in extensions},
    }


class Peer:
    """The server's side of one request, written by hand.

    `receive` hands out the request body in the given chunks; after that it waits, as uvicorn's
    does, until the response is complete or the client has left (`leave()`, or `leaves=True`
    to leave right after sending the body), and then reports `http.disconnect`. `sent` records
    every message the app sends, in order.
    """

    def __init__(self, *body: bytes, leaves: bool = False) -> None:
        self.body = list(body) or [b""]
        self.leaves = leaves
        self.sent: list[Message] = []
        self.gone = anyio.Event()
        self.first_body = anyio.Event()  # a non-empty body chunk has reached the client
        self.complete = anyio.Event()
        self.trailers = False

    def leave(self) -> None:
        self.gone.set()

    async def receive(self) -> Message:
        if self.body and not self.gone.is_set():
            chunk = self.body.pop(0)
            if not self.body and self.leaves:
                self.leave()
            return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}
        if not self.gone.is_set():  # a set anyio.Event still checkpoints; uvicorn answers at once
            await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        kind = message["type"]
        if kind == "http.response.start":
            self.trailers = bool(message.get("trailers", False))
        if kind == "http.response.body" and message.get("body"):
            self.first_body.set()
        if (
            (kind == "http.response.body" and not message.get("more_body", False) and not self.trailers)
            or (kind == "http.response.trailers" and not message.get("more_trailers", False))
            or kind == "http.response.pathsend"
        ):
            self.complete.set()
            self.leave()

    @property
    def types(self) -> list[str]:
        return [message["type"] for message in self.sent]

    @property
    def body_sent(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent if message["type"] == "http.response.body")
