"""How `HTTPMiddleware` runs dispatch and the app: in the request's own task, or the app in a task
of its own where dispatch needs that (a deadline around call_next, call_next in another task).

Each case is checked with the response started in the app's own task (ASGI 2.4, as Starlette's
StreamingResponse sends then) and from a child task (ASGI 2.3, as it sends under uvicorn).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import cast

import anyio
import pytest
from peer import DEADLOCK, Peer, alive_after, http_scope
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw import CallNext, HTTPMiddleware

SPEC_VERSIONS = [pytest.param("2.4", id="start-in-app-task"), pytest.param("2.3", id="start-in-child-task")]


class Streamer:
    """An endpoint streaming three chunks, which records how its body generator ended."""

    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.gate = gate
        self.ended: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                for chunk in (b"one,", b"two,", b"three"):
                    if self.gate is not None:
                        await self.gate.wait()
                    yield chunk
            except BaseException as exc:
                self.ended.append(type(exc).__name__)
                raise
            else:
                self.ended.append("done")

        await StreamingResponse(chunks(), headers={"x-app": "yes"})(scope, receive, send)


def with_header(app: ASGIApp, dispatch_timeout: float | None = None) -> HTTPMiddleware:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        if dispatch_timeout is None:
            response = await call_next(request)
        else:
            with anyio.fail_after(dispatch_timeout):
                response = await call_next(request)
        response.headers["x-dispatch"] = "yes"
        return response

    return HTTPMiddleware(app, dispatch)


PATHS = [
    pytest.param(None, id="inline"),
    # A cancel scope held across call_next must be left in the task that entered it, so the app
    # runs in a task of its own. Run inline, it would be left in the app's sending task.
    pytest.param(DEADLOCK, id="deadline-around-call_next"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
@pytest.mark.parametrize("dispatch_timeout", PATHS)
async def test_streaming(spec_version: str, dispatch_timeout: float | None) -> None:
    endpoint = Streamer()
    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await with_header(endpoint, dispatch_timeout)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 200
    assert (b"x-dispatch", b"yes") in peer.sent[0]["headers"]
    assert peer.body_sent == b"one,two,three"
    assert endpoint.ended == ["done"]


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
async def test_deadline_around_call_next_expires(spec_version: str) -> None:
    gate = anyio.Event()
    endpoint = Streamer(gate)
    reached = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()
        reached.append("app")
        await endpoint(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        with anyio.move_on_after(0):
            return await call_next(request)
        gate.set()  # let the app go on; what it sends now is dropped
        return Response("timed out", status_code=504)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await HTTPMiddleware(slow_app, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 504
    assert peer.body_sent == b"timed out"
    assert reached == ["app"]  # the app ran to its end before the middleware returned


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
async def test_call_next_in_a_task_of_dispatch(spec_version: str) -> None:
    endpoint = Streamer()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        responses: list[Response] = []

        async def get() -> None:
            responses.append(await call_next(request))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(get)
        responses[0].headers["x-dispatch"] = "yes"
        return responses[0]

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await HTTPMiddleware(endpoint, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert (b"x-dispatch", b"yes") in peer.sent[0]["headers"]
    assert peer.body_sent == b"one,two,three"
    assert endpoint.ended == ["done"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
async def test_call_next_under_asyncio_wait_for(spec_version: str) -> None:
    # The timeout middleware many FastAPI projects copy: wait_for runs call_next in a new task.
    endpoint = Streamer()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await asyncio.wait_for(call_next(request), timeout=DEADLOCK)
        response.headers["x-dispatch"] = "yes"
        return response

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await HTTPMiddleware(endpoint, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert (b"x-dispatch", b"yes") in peer.sent[0]["headers"]
    assert peer.body_sent == b"one,two,three"


class DispatchError(Exception):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
@pytest.mark.parametrize("dispatch_timeout", PATHS)
async def test_dispatch_failing_after_call_next(spec_version: str, dispatch_timeout: float | None) -> None:
    endpoint = Streamer()

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        if dispatch_timeout is None:
            await call_next(request)
        else:
            with anyio.fail_after(dispatch_timeout):
                await call_next(request)
        raise DispatchError("after call_next")

    peer = Peer()
    with anyio.fail_after(DEADLOCK), pytest.raises(DispatchError, match="after call_next") as caught:
        await HTTPMiddleware(endpoint, dispatch)(http_scope(spec_version=spec_version), peer.receive, peer.send)
    assert caught.value.__context__ is None  # raised as dispatch raised it, not chained to the app's unwinding
    assert peer.sent == []  # nothing of the app's response went out
    assert endpoint.ended in ([], ["GeneratorExit"], ["CancelledError"], ["Cancelled"])


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", SPEC_VERSIONS)
@pytest.mark.parametrize("dispatch_timeout", PATHS)
async def test_cancelling_the_request_stops_the_app(spec_version: str, dispatch_timeout: float | None) -> None:
    gate = anyio.Event()  # never set: the stream stops after its first chunk
    endpoint = Streamer()
    endpoint.gate = None

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"one,"
            await gate.wait()
            yield b"never"
        finally:
            endpoint.ended.append("closed")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(chunks())(scope, receive, send)

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                with_header(app, dispatch_timeout), http_scope(spec_version=spec_version), peer.receive, peer.send
            )
            await peer.first_body.wait()
            tasks.cancel_scope.cancel()
    assert peer.body_sent == b"one,"
    assert endpoint.ended == ["closed"]  # the app was stopped and cleaned up before the request ended


class Interrupted(BaseException):
    """A failure that is not an `Exception`, as KeyboardInterrupt is not."""


# Where the app fails, and how dispatch handles its response; whichever way, the failure reaches
# the server. Was a bug: the engine raised the app's failure from a local variable, so the
# failure's traceback held that frame and the frame the failure: a reference cycle that kept the
# whole request alive until the cycle collector ran.
FAILURES = ["before its response", "after its response started", "mid-body, dispatch reading it", "interrupted"]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_request_is_freed_without_the_cycle_collector(anyio_backend: str, failure: str) -> None:
    refs: list[weakref.ref[object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if failure == "before its response":
            raise ValueError(failure)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        if failure == "interrupted":
            raise Interrupted
        raise ValueError(failure)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        refs.append(weakref.ref(request))
        response = await call_next(request)
        if failure == "mid-body, dispatch reading it":
            return StreamingResponse(cast(StreamingResponse, response).body_iterator)
        return response

    async def main() -> None:
        peer = Peer()
        with pytest.raises((ValueError, Interrupted)):
            await HTTPMiddleware(app, dispatch)(http_scope(), peer.receive, peer.send)

    assert alive_after(main, anyio_backend, refs) == [False]
