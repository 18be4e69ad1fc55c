"""The two objects dispatch handles: the request it reads, and the response call_next gives it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send


class Source(Protocol):
    """What the response reads from the exchange behind it (an `Exchange`), which it never imports."""

    async def send_start(self, send: Send, response: Response) -> None: ...

    def pull_body(self) -> AsyncGenerator[bytes | Message, None]: ...


def disconnect() -> Message:
    return {"type": "http.disconnect"}


def is_last(message: Message, trailers: bool) -> bool:
    """Whether `message` ends the response, after which dispatch's own background task may run."""
    kind: str = message["type"]
    if kind == "http.response.body":
        return not (trailers or bool(message.get("more_body", False)))
    if kind == "http.response.trailers":
        return not message.get("more_trailers", False)
    return kind == "http.response.pathsend"


class DispatchRequest(Request):
    """The request dispatch sees; the app behind reads its body through `app_receive`.

    Whatever dispatch read of the body is replayed to the app, so both can read it in any
    order, with the same rules as Starlette's: after `body()` the app gets the whole body again,
    after a full `stream()` an empty one. This reads the `_body`, `_stream_consumed` and
    `_is_disconnected` fields that `Request` itself keeps, as Starlette's own cached request does.
    """

    _handed_over = False  # the body (or what is left of it) has reached the app
    _disconnect_seen = False

    async def app_receive(self) -> Message:
        if self._disconnect_seen:
            return disconnect()
        if self._handed_over:
            if self._is_disconnected:
                message = disconnect()
            else:
                message = await self.receive()
            if message["type"] == "http.disconnect":
                self._is_disconnected = self._disconnect_seen = True
            return message
        body: bytes | None = getattr(self, "_body", None)
        if body is None and self._stream_consumed:
            body = b""
        if body is not None:
            self._handed_over = True
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            async with aclosing(self.stream()) as stream:
                chunk = await stream.__anext__()
        except ClientDisconnect:
            self._disconnect_seen = True
            return disconnect()
        self._handed_over = self._stream_consumed
        return {"type": "http.request", "body": chunk, "more_body": not self._stream_consumed}


class AppResponse(Response):
    """What `call_next` returns: the app's status and headers, with the body still on its way.

    Change `status_code` or `headers` freely. Read `body_iterator` to see the body (it then flows
    through dispatch); leave it alone and the app sends the body straight to the client.
    """

    _body_iterator: AsyncIterator[Any] | None = None
    body_touched = False  # dispatch has read or replaced `body_iterator`

    def __init__(self, exchange: Source, start: Message) -> None:
        self.status_code = start["status"]
        self.raw_headers = list(start.get("headers", ()))
        self.media_type = None
        self.background = None
        self._exchange = exchange

    # Made on first use: most dispatch functions never look at the body, and then the app sends
    # it straight to the client.
    @property
    def body_iterator(self) -> AsyncIterator[Any]:
        self.body_touched = True
        if self._body_iterator is None:
            self._body_iterator = self._exchange.pull_body()
        return self._body_iterator

    @body_iterator.setter
    def body_iterator(self, iterator: AsyncIterator[Any]) -> None:
        self.body_touched = True
        self._body_iterator = iterator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange
        await exchange.send_start(send, self)
        ended = False
        async for chunk in self.body_iterator:
            if isinstance(chunk, dict):  # pathsend, trailers or a push promise, passed on as the app sent them
                kind = chunk["type"]
                if kind == "http.response.trailers" and not ended:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = ended or kind != "http.response.push"  # a push promise may come mid-body
                await send(chunk)
                continue
            if isinstance(chunk, str):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
