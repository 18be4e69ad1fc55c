"""Cancelling the app's task behind `HTTPMiddleware` (`starlette_mw._engine.tasks`) as a task group would.

Each test runs against Starlette's `BaseHTTPMiddleware` too, whose task group shows the behaviour
expected. On asyncio the app has no anyio scope around it (it would cost too much per request),
so `AppTask` delivers the cancellation itself; these cases failed against its first version.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import anyio.lowlevel
import pytest
from peer import DEADLOCK, MIDDLEWARES, Middlewares, Peer, http_scope, passthrough
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from starlette_mw import CallNext, HTTPMiddleware

# Every test here runs with the app's task started eagerly and started the ordinary way (the fallback).
pytestmark = pytest.mark.usefixtures("engine_start")


class DispatchFailure(Exception):
    pass


# Cancelling the app is edge-triggered on asyncio: AppTask cancels its task once, where a task
# group's cancel scope (and this engine on trio) cancels it again at every later checkpoint until
# it leaves. An app that loses that one cancellation runs on, and the request's task waits for it,
# shielded, for as long as it runs: forever for an endless stream. Python 3.11's asyncio.wait_for
# loses it when the awaited result arrives in the same pass as the cancellation; here an event
# arrives for a server-sent-events style endpoint just as the request is cancelled.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_cancellation_lost_by_the_app_is_delivered_again(middleware: Middlewares) -> None:
    events: asyncio.Queue[bytes] = asyncio.Queue()
    ended: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), 0.5)  # a keep-alive would go out on timeout
                except TimeoutError:
                    ended.append("ran on until its own timeout")
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(middleware(app, passthrough), http_scope(), peer.receive, peer.send)
            events.put_nowait(b"one,")
            await peer.first_body.wait()
            events.put_nowait(b"two,")
            tasks.cancel_scope.cancel()
    assert ended == ["cancelled"]


# While the app is inside an anyio shield, AppTask retries the cancellation with loop.call_soon on
# every pass of the event loop: the loop never sleeps in select(), and the worker burns a whole
# core until the app leaves the shield (a rollback, a commit, a slow close). A task group's scope
# does not look at a shielded task until the shield is left.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_no_busy_loop_while_the_app_is_shielded(middleware: Middlewares) -> None:
    cpu_seconds: list[float] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(PlainTextResponse("ok"), scope, receive, send)
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # dispatch has failed by now
                started = time.process_time()
                await anyio.sleep(0.3)
                cpu_seconds.append(time.process_time() - started)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        raise DispatchFailure

    peer = Peer()
    with pytest.raises(DispatchFailure), anyio.fail_after(DEADLOCK):
        await middleware(app, dispatch)(http_scope(), peer.receive, peer.send)
    assert len(cpu_seconds) == 1
    assert cpu_seconds[0] < 0.1, f"{cpu_seconds[0]:.2f} s of CPU while the app slept 0.3 s in a shield"


# The request's task waits for the app behind a shield once it has cancelled it, but an anyio
# shield does not stop asyncio's own Task.cancel(): a second native cancellation of the request's
# task (an outer asyncio.timeout and then the server's shutdown, say) ends the wait, and the request
# returns while its app still runs. A task group goes on waiting for its tasks however often it is
# cancelled.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_request_cancelled_twice_still_waits_for_the_app(middleware: Middlewares) -> None:
    app_done: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.1)
            app_done.append("committed")

    peer = Peer()
    request = asyncio.ensure_future(middleware(app, passthrough)(http_scope(), peer.receive, peer.send))
    with anyio.fail_after(DEADLOCK):
        await peer.first_body.wait()
        for _ in range(2):
            request.cancel()
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.CancelledError):
            await request
    done_when_the_request_ended = list(app_done)
    await asyncio.sleep(0.2)  # let a detached app finish before the test ends
    assert done_when_the_request_ended == ["committed"]


class LoopLookupFailed(Exception):
    pass


# Was a bug: the request's task, cancelled while it waited for the app, waited again in a loop
# that retried on any exception at all. A wait that failed at once (here asyncio.get_running_loop,
# patched by the application's own test suite, as a real project's was) was retried at once,
# forever, without yielding: the worker froze at 100% CPU. Only cancellation is held back now;
# the failure reaches the server, and the app is still stopped.
# On the old code the event loop itself spins and swallows even the signal method's exception:
# only the thread method ends the run.
@pytest.mark.timeout(10, method="thread")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_wait_that_fails_while_cancelled_propagates_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_ended = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await anyio.sleep_forever()  # an endless stream, until the request is cancelled
        finally:
            app_ended.set()

    def get_running_loop() -> asyncio.AbstractEventLoop:
        raise LoopLookupFailed("patched by the test")

    with anyio.fail_after(DEADLOCK), anyio.CancelScope() as request_scope:

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The critical moment: the request is cancelled, and its next wait cannot find the loop.
                monkeypatch.setattr(asyncio, "get_running_loop", get_running_loop)
                request_scope.cancel()

        with pytest.raises(LoopLookupFailed):
            await HTTPMiddleware(app, passthrough)(http_scope(), Peer().receive, send)
        monkeypatch.undo()
        await anyio.lowlevel.checkpoint()  # the scope's cancellation, which the failure overtook, ends here
    with anyio.fail_after(DEADLOCK):
        await app_ended.wait()  # the app was stopped all the same
