"""The app's task behind `HTTPMiddleware` (`starlette_mw._engine.tasks`): started eagerly on asyncio, a
system task on trio, and the waits for its one-way states (`until` and `wake`).

Tests marked "Was a bug" failed against the first version of the eager start and guard its fixes;
the rest cover behaviour that held from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import types
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from peer import DEADLOCK, MIDDLEWARES, Middlewares, Peer, http_scope, passthrough
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from starlette_mw import CallNext, HTTPMiddleware
from starlette_mw._engine.tasks import AppTask


async def serve(app: ASGIApp, spec_version: str = "2.4") -> Peer:
    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        await app(http_scope(spec_version=spec_version), peer.receive, peer.send)
    return peer


# Every test here runs with the app's task started eagerly and started the ordinary way (the fallback).
pytestmark = pytest.mark.usefixtures("engine_start")


class DispatchFailure(Exception):
    pass


# Was a bug on asyncio: an inline step treated a bare `yield` (asyncio.sleep(0), anyio.sleep(0),
# anyio.lowlevel.checkpoint()) as "go on at once" instead of "let the loop run": nothing else runs
# until the app waits on a real future, so an app that polls with sleep(0) spins without ever
# letting the task it waits for run (here it gives up after 1000 turns; a `while` loop would hang
# the whole event loop, and fail_after could not even fire).
@pytest.mark.anyio
async def test_app_yielding_to_the_loop_lets_other_tasks_run() -> None:
    turns: list[int] = []
    other_ran = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        turn = 0
        while not other_ran.is_set() and turn < 1000:
            await anyio.lowlevel.checkpoint()
            turn += 1
        turns.append(turn)
        await PlainTextResponse("ok")(scope, receive, send)

    async def other() -> None:
        other_ran.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other)  # runs at the loop's next turn
        peer = await serve(HTTPMiddleware(app, passthrough))
    assert peer.body_sent == b"ok"
    assert turns[0] < 1000, "the app never let the event loop run"


# Was a bug on asyncio, same cause: a cancel scope that expires while the app runs inline is
# delivered by a loop callback, which never ran at the app's checkpoints.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_cancel_scope_expired_inline_cancels_at_next_checkpoint(middleware: Middlewares) -> None:
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.move_on_after(0):
            await anyio.lowlevel.checkpoint()
            reached.append("past the checkpoint")
        await PlainTextResponse("ok")(scope, receive, send)

    peer = await serve(middleware(app, passthrough))
    assert peer.body_sent == b"ok"
    assert reached == []


# Was a bug, same cause: the app's task had a cancellation pending, but inline steps ignored it.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_app_cancelling_its_own_task_is_cancelled_at_next_yield(middleware: Middlewares) -> None:
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
            reached.append("past sleep(0)")
        except asyncio.CancelledError:
            task.uncancel()
        await PlainTextResponse("ok")(scope, receive, send)

    peer = await serve(middleware(app, passthrough))
    assert peer.body_sent == b"ok"
    assert reached == []


@types.coroutine
def bad_yield() -> Generator[object, None, None]:
    yield 42  # what awaiting another framework's primitive looks like to asyncio's Task or to trio


# Was a bug on asyncio: step() called `waiting_on.done()` on whatever the app yielded, so an
# AttributeError escapes from AppTask.__init__ in the request's task (call_next), the AppTask is
# never stored (neither cancelled nor joined), and the orphaned asyncio Task then resumes the app
# from its bad yield with None: the app runs on, detached, after the request ended. A Task throws
# RuntimeError("Task got bad yield: 42") into the app instead (trio: TypeError).
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_bad_yield_is_thrown_into_the_app(middleware: Middlewares) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await bad_yield()
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise
        seen.append("resumed")
        await PlainTextResponse("ok")(scope, receive, send)

    with pytest.raises((RuntimeError, TypeError)):
        await serve(middleware(app, passthrough))
    await anyio.sleep(0.01)  # an orphaned app task would resume here
    assert seen in (["RuntimeError"], ["TypeError"])


# Was a bug on asyncio: AppTask.cancel() cancelled the asyncio Task natively, which anyio's
# shielded scopes do not stop, so the app's shielded work (a commit, a rollback) was cut short. Starlette
# cancels the app through a task group's cancel scope, as this engine does on trio.
@pytest.mark.anyio
@pytest.mark.parametrize("middleware", MIDDLEWARES)
async def test_shielded_work_in_app_survives_dispatch_failure(middleware: Middlewares) -> None:
    done: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(PlainTextResponse("ok"), scope, receive, send)
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)
                done.append("committed")

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        raise DispatchFailure

    with pytest.raises(DispatchFailure):
        await serve(middleware(app, dispatch))
    assert done == ["committed"]


class OneState(AppTask):
    """An `AppTask` (never launched) with one one-way state of its own, as `Exchange` has several."""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        super().__init__(PlainTextResponse("unused"), http_scope())
        self.ready = False

    def set(self) -> None:
        self.ready = True
        if self.waits is not None:
            self.wake("ready")

    async def wait(self) -> None:
        await self.until("ready")


# Was a bug on asyncio: all waiters shared one future, and asyncio cancels a task's future when
# it cancels the task, so cancelling one waiter cancelled every other waiter too (anyio.Event
# does not). No state of Exchange has two waiters today.
@pytest.mark.anyio
async def test_cancelling_one_waiter_leaves_the_others_waiting() -> None:
    state = OneState()
    outcomes: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await state.wait()
            outcomes.append(f"{name} woken")
            return
        outcomes.append(f"{name} cancelled")

    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter, "first", first)
            tasks.start_soon(waiter, "second", second)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            state.set()
    assert sorted(outcomes) == ["first cancelled", "second woken"]


@pytest.mark.anyio
async def test_state_set_before_and_after_wait_and_after_a_cancelled_wait() -> None:
    state = OneState()
    with anyio.fail_after(DEADLOCK):
        with anyio.move_on_after(0.01) as scope:
            await state.wait()
        assert scope.cancelled_caught and not state.ready
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(state.wait)
            await anyio.wait_all_tasks_blocked()
            state.set()
        assert state.ready and state.waits is None
        await state.wait()  # set before the wait: over at once


# A wait retried after each cancellation (`AppTask.wait_despite_cancellation`) leaves a cancelled
# future each time; they are dropped as the next wait comes, rather than kept until the state is set.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_cancelled_waits_do_not_pile_up() -> None:
    state = OneState()
    for _ in range(100):
        with anyio.move_on_after(0):
            await state.wait()
    assert state.waits is not None and len(state.waits["ready"]) == 1
    state.set()
    assert state.waits is None


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_app_runs_inline_as_its_own_task_in_its_own_context() -> None:
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["app task"] = asyncio.current_task()
        seen["var in app"] = var.get()
        var.set("app")
        await PlainTextResponse("ok")(scope, receive, send)
        var.set("after start")

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        seen["request task"] = asyncio.current_task()
        var.set("dispatch")
        response = await call_next(request)
        seen["task after call_next"] = asyncio.current_task()
        seen["var after call_next"] = var.get()
        return response

    peer = await serve(HTTPMiddleware(app, dispatch))
    assert peer.body_sent == b"ok"
    assert seen["app task"] is not seen["request task"]
    assert seen["task after call_next"] is seen["request task"]
    assert seen["var in app"] == "dispatch"
    assert seen["var after call_next"] == "app"  # set before the response started, not after


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_anyio_scopes_entered_inline_before_the_first_real_wait(spec_version: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.fail_after(DEADLOCK):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(anyio.sleep, 0.01)
                await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.01)
        with anyio.move_on_after(0.01):
            await anyio.sleep(DEADLOCK)
        await StreamingResponse(iter([b"one,", b"two"]))(scope, receive, send)

    peer = await serve(HTTPMiddleware(app, passthrough), spec_version)
    assert peer.body_sent == b"one,two"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_asyncio_timeout_entered_inline() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(DEADLOCK)
        await PlainTextResponse("ok")(scope, receive, send)

    peer = await serve(HTTPMiddleware(app, passthrough))
    assert peer.body_sent == b"ok"


def header_layer(app: ASGIApp, name: str) -> HTTPMiddleware:
    async def dispatch(request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers[name] = "yes"
        return response

    return HTTPMiddleware(app, dispatch)


# Each inner layer's app task is started inside the outer layer's eager step.
@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
@pytest.mark.parametrize("delay", [None, 0, 0.01], ids=["no-wait", "sleep-0", "sleep"])
async def test_stacked_layers(spec_version: str, delay: float | None) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one,", b"two"):
            if delay is not None:
                await anyio.sleep(delay)
            yield chunk

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if delay is not None:
            await anyio.sleep(delay)
        await StreamingResponse(chunks())(scope, receive, send)

    stack: ASGIApp = app
    for name in ("x-a", "x-b", "x-c"):
        stack = header_layer(stack, name)
    peer = await serve(stack, spec_version)
    assert peer.body_sent == b"one,two"
    assert {b"x-a", b"x-b", b"x-c"} <= {name for name, _ in peer.sent[0]["headers"]}


# The app ends inline without a response and dispatch re-raises: the app's task is cancelled
# before its first step, after the app has finished. Nothing may be logged or crash.
@pytest.mark.anyio
async def test_app_failing_inline_is_raised_once_and_nothing_is_logged(anyio_backend: str) -> None:
    loop_errors: list[str] = []
    if anyio_backend == "asyncio":
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context["message"]))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise DispatchFailure("from the app")

    with pytest.raises(DispatchFailure, match="from the app"):
        await serve(HTTPMiddleware(app, passthrough))
    await anyio.sleep(0.01)
    gc.collect()
    assert loop_errors == []


# The request is cancelled from outside while its app waits: with the app's task still paused where
# the request's task stepped it (it has not waited on anything that needs the loop yet), or after.
@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
@pytest.mark.parametrize("where", ["before-response", "mid-body"])
async def test_cancelling_the_request_while_the_app_waits(spec_version: str, where: str) -> None:
    waiting = anyio.Event()
    ended: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"one,"
            waiting.set()
            await anyio.sleep(DEADLOCK)
            yield b"never"
        finally:
            ended.append("body")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if where == "before-response":
                waiting.set()
                await anyio.sleep(DEADLOCK)
            await StreamingResponse(chunks())(scope, receive, send)
        finally:
            ended.append("app")

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                HTTPMiddleware(app, passthrough), http_scope(spec_version=spec_version), peer.receive, peer.send
            )
            await waiting.wait()
            tasks.cancel_scope.cancel()
    assert ended[-1] == "app"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_the_apps_task_shows_its_coroutine_when_debugging() -> None:
    # asyncio's repr() and get_stack() read the task's coroutine; the eager wrapper passes them on.
    waiting = anyio.Event()
    go_on = anyio.Event()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        waiting.set()
        await go_on.wait()
        await PlainTextResponse("ok")(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    async def look() -> None:
        await waiting.wait()
        tasks = [task for task in asyncio.all_tasks() if "AppTask.run" in repr(task)]
        seen.append(repr(tasks[0]))
        seen.append(str(len(tasks[0].get_stack())))
        go_on.set()

    peer = Peer()
    with anyio.fail_after(DEADLOCK):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(look)
            await HTTPMiddleware(app, dispatch)(http_scope(), peer.receive, peer.send)
    assert "coro=<AppTask.run() running at" in seen[0]
    assert int(seen[1]) >= 1
    assert peer.body_sent == b"ok"


class FactoryFailure(Exception):
    pass


@contextlib.contextmanager
def wrapping_task_factory(*, yield_first: bool = False, fail: bool = False) -> Generator[None, None, None]:
    """On the running loop, a task factory that runs each coroutine inside one of its own, as
    sentry_sdk's AsyncioIntegration does; the loop has none again afterwards.

    With `fail`, the wrapper raises `FactoryFailure` instead of running the coroutine it was given.
    """

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **options: Any) -> asyncio.Task[Any]:
        async def wrapper() -> Any:
            if yield_first:
                await asyncio.sleep(0)
            if fail:
                raise FactoryFailure
            return await coro

        return asyncio.Task(wrapper(), loop=loop, **options)

    installed: Callable[..., asyncio.Task[Any]] = factory  # (typeshed types the factory's options narrowly)
    loop = asyncio.get_running_loop()
    loop.set_task_factory(installed)
    try:
        yield
    finally:
        loop.set_task_factory(None)


def recording_app(started: list[str]) -> ASGIApp:
    """An app that answers "ok", and records in `started` that it began."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.append("app")
        await PlainTextResponse("ok")(scope, receive, send)

    return app


# Was a bug: with such a factory the eager start could not step the app, so every request whose
# app waited on I/O hung, its cancellation spinning the loop.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_task_factory_that_wraps_coroutines() -> None:
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["var in app"] = var.get()
        await asyncio.sleep(0.01)  # a real wait
        await PlainTextResponse("ok")(scope, receive, send)

    async def dispatch(request: Request, call_next: CallNext) -> Response:
        var.set("dispatch")
        return await call_next(request)

    with wrapping_task_factory(yield_first=False):
        peer = await serve(HTTPMiddleware(app, dispatch))
    assert peer.body_sent == b"ok"
    assert seen == {"var in app": "dispatch"}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_request_cancelled_before_the_apps_task_began() -> None:
    started: list[str] = []
    app = recording_app(started)
    peer = Peer()
    with wrapping_task_factory(yield_first=True):  # the app's task waits a turn first
        # Made without the factory, this task runs dispatch at its first step, which starts the app's task.
        request = asyncio.Task(HTTPMiddleware(app, passthrough)(http_scope(), peer.receive, peer.send))
        await asyncio.sleep(0)
        request.cancel()  # reaches the app's task while its wrapper waits, before the app began
        with anyio.fail_after(DEADLOCK), pytest.raises(asyncio.CancelledError):
            await request
    assert started == []
    assert peer.sent == []


# Was a bug: when the app's task ended before the app began (here its factory's wrapper failed),
# call_next went on waiting for a response start that could not come, and the request hung.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_task_factory_that_fails_before_the_app_began() -> None:
    started: list[str] = []
    app = recording_app(started)
    peer = Peer()
    with wrapping_task_factory(fail=True), anyio.move_on_after(DEADLOCK) as deadline, pytest.raises(FactoryFailure):
        await HTTPMiddleware(app, passthrough)(http_scope(), peer.receive, peer.send)
    assert not deadline.cancel_called  # raised at once, not once the request was cancelled
    assert started == []
    assert peer.sent == []
