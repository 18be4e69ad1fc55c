"""Requests to a `RedirectMiddleware` app as uvicorn would pass them, for the redirect tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from starlette_mw import Redirect, RedirectMiddleware


async def echo(request: Request) -> Response:
    return PlainTextResponse(f"{request.method} {request.url.path}?{request.url.query}")


def make_app(*rules: Redirect, routes: list[Any] | None = None, **options: Any) -> Starlette:
    routes = routes if routes is not None else [Route("/{path:path}", echo, methods=["GET", "POST"])]
    return Starlette(routes=routes, middleware=[Middleware(RedirectMiddleware, rules=list(rules), **options)])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[Message] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


async def call(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    query: bytes = b"",
    host: bytes | None = b"example.com",
    scheme: str = "http",
    root_path: str = "",
    raw_path: bytes | None = None,
) -> Answer:
    """One request as uvicorn would pass it: `path` decoded, `raw_path` as sent."""
    headers = [] if host is None else [(b"host", host)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    messages: list[Message] = []
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = messages[0]
    return Answer(
        status=start["status"],
        headers={name.decode(): value.decode("latin-1") for name, value in start["headers"]},
        body=b"".join(message.get("body", b"") for message in messages[1:]),
        messages=messages,
    )
