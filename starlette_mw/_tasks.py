"""The task the app runs in behind `HTTPMiddleware`, started eagerly on asyncio.

`call_next` must return while the app is still running, so the app needs a task of its own.
Starting one costs little; waiting for it to be scheduled costs passes of the event loop, and
most apps answer without ever waiting on I/O. So on asyncio the app's coroutine takes its first
steps at once, inline, but *as its own task*: `asyncio.current_task()` is the app's task, and it
runs in the task's own context. The request's task goes on stepping it for as long as the app
only waits on things that are already done (the middleware's own events, mostly). As soon as the
app waits on anything else, its task takes over, exactly where the app stopped, and from then on
it is an ordinary task. This is what Python 3.12's eager tasks do for a task's first step.

Python 3.11 has no public way to make a task current, so this uses asyncio's `_enter_task` and
`_leave_task`; without them, or with a task factory on the loop (which may wrap the coroutine, as
Sentry's does), the app's task simply starts the ordinary way. On trio the app runs
in a system task; either way the middleware joins it before the request ends.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import Any

import anyio

_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)


class Flag:
    """A one-way event, as `anyio.Event`, that costs nothing until somebody has to wait for it.

    Most requests set every flag before anyone waits (the app answers at once). A wait that has
    to block waits on a bare future of its own on asyncio (which the app's eager steps can see is
    done), on an anyio event elsewhere.
    """

    __slots__ = ("event", "futures", "value")

    def __init__(self) -> None:
        self.value = False
        self.futures: list[asyncio.Future[None]] | None = None
        self.event: anyio.Event | None = None

    def set(self) -> None:
        self.value = True
        if self.futures is not None:
            for future in self.futures:
                if not future.done():  # a cancelled waiter leaves a cancelled future
                    future.set_result(None)
        if self.event is not None:
            self.event.set()

    def is_set(self) -> bool:
        return self.value

    async def wait(self) -> None:
        if self.value:
            return
        try:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        except RuntimeError:  # not asyncio
            if self.event is None:
                self.event = anyio.Event()
            await self.event.wait()
            return
        # One future per waiter: asyncio cancels the future a cancelled task waits on.
        if self.futures is None:
            self.futures = []
        self.futures.append(future)
        try:
            await future
        finally:
            self.futures.remove(future)


_task_states: Mapping[Any, Any] | None
try:
    from anyio._backends._asyncio import _task_states
except ImportError:  # pragma: no cover - anyio moved it: shields are then not seen
    _task_states = None


def _shielded(task: asyncio.Task[Any]) -> bool:
    """Whether the task is inside a shielded anyio cancel scope (anyio keeps no public record)."""
    state = _task_states.get(task) if _task_states is not None else None
    scope = getattr(state, "cancel_scope", None)
    while scope is not None:
        if getattr(scope, "shield", False):
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False


_SHIELD_POLL_SECONDS = 0.005

_NOTHING: Any = object()  # the app has not been stepped yet, or its task holds what it waits on


class _EagerCoroutine(Coroutine[Any, Any, None]):
    """The app's coroutine as its asyncio task sees it.

    Steps taken inline before the task first runs are replayed to it: its first step receives
    what the app was last waiting on, or learns that the app has already finished.
    """

    __slots__ = ("coro", "owned", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.coro = coro
        self.owned = False  # the task has taken its first step: no more inline steps
        self.waiting_on: Any = _NOTHING

    def send(self, value: Any) -> Any:
        if not self.owned:
            self.owned = True
            if self.done:  # the app finished inline; `AppTask.join` has what it left
                raise StopIteration
            if self.waiting_on is not _NOTHING:
                waiting_on, self.waiting_on = self.waiting_on, _NOTHING
                return waiting_on  # the task now waits on it, as if the app had just yielded it
        return self.coro.send(value)

    def throw(self, *args: Any) -> Any:
        self.owned = True
        if self.done:
            raise args[0] if len(args) == 1 else args[1]
        return self.coro.throw(*args)

    def close(self) -> None:
        self.coro.close()

    @property
    def done(self) -> bool:
        return inspect.getcoroutinestate(self.coro) == inspect.CORO_CLOSED

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - only a task drives it
        raise TypeError("the app's coroutine is driven by its task")

    # What asyncio reads of a task's coroutine for its repr() and get_stack().
    def __getattr__(self, name: str) -> Any:
        if name in _COROUTINE_ATTRIBUTES:
            return getattr(self.coro, name)
        raise AttributeError(name)


_COROUTINE_ATTRIBUTES = frozenset({"__name__", "__qualname__", "cr_code", "cr_frame", "cr_await", "cr_running"})


class AppTask:
    """The app's task: started at once, stepped inline while it can be, joined at the end."""

    __slots__ = ("cancelling", "context", "eager", "error", "finished", "loop", "scope", "task")

    def __init__(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.scope: anyio.CancelScope | None = None  # trio: the system task is cancelled through it
        self.cancelling = False
        self.finished = Flag()
        self.error: BaseException | None = None
        self.eager: _EagerCoroutine | None = None
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # trio
            self.loop = None
            import trio

            self.scope = anyio.CancelScope()
            trio.lowlevel.spawn_system_task(self.run, function, context=contextvars.copy_context())
            return
        self.context = contextvars.copy_context()
        if _enter_task is None or _leave_task is None or self.loop.get_task_factory() is not None:
            # A task factory may wrap the coroutine in one of its own (Sentry's does), which no
            # inline step can drive: the task starts the ordinary way.
            coro = self.run(function)
            self.task = self.loop.create_task(coro, context=self.context)
            # A task cancelled (or failed by the factory's wrapper) before `run` began never sets `finished`.
            self.task.add_done_callback(functools.partial(self._ended, coro))
            return
        self.eager = _EagerCoroutine(self.run(function))
        self.task = self.loop.create_task(self.eager, context=self.context)

    async def run(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # Nothing may escape: a trio system task that raises crashes the whole run, and on asyncio
        # nobody awaits the task. `join` raises it in the request's task instead.
        try:
            if self.scope is None:
                await function()
            else:
                with self.scope:
                    await function()
        except BaseException as exc:
            if not (self.cancelling and isinstance(exc, asyncio.CancelledError)):
                self.error = exc
        finally:
            self.finished.set()

    def _ended(self, coro: Coroutine[Any, Any, None], task: asyncio.Task[Any]) -> None:
        if self.finished.is_set():
            return
        coro.close()  # never started: no "never awaited" warning
        if not task.cancelled():
            self.error = task.exception()
        elif not self.cancelling:
            self.error = asyncio.CancelledError()
        self.finished.set()

    def step(self) -> None:
        """Run the app inline, as its task, while it waits only on futures that are already done.

        Anything else it yields (a pending future, a bare `yield` that lets the loop run, a bad
        yield) is left to its task, which takes over with asyncio's own handling of it; so is a
        cancellation of the task.
        """
        eager = self.eager
        if eager is None or eager.owned or self.finished.is_set() or self.cancelling or self.task.cancelling():
            return
        waiting_on = eager.waiting_on
        if waiting_on is not _NOTHING and not (asyncio.isfuture(waiting_on) and waiting_on.done()):
            return
        assert self.loop is not None and _enter_task is not None and _leave_task is not None
        caller = asyncio.current_task(self.loop)
        assert caller is not None
        while True:
            if waiting_on is not _NOTHING:
                waiting_on._asyncio_future_blocking = False  # as asyncio's Task does when it resumes
            _leave_task(self.loop, caller)
            _enter_task(self.loop, self.task)
            try:
                waiting_on = self.context.run(eager.coro.send, None)
            except StopIteration:  # `run` lets nothing else out, and has set `finished`
                return
            finally:
                _leave_task(self.loop, self.task)
                _enter_task(self.loop, caller)
            if not (asyncio.isfuture(waiting_on) and waiting_on.done()) or self.task.cancelling():
                eager.waiting_on = waiting_on
                return

    def cancel(self) -> None:
        """Cancel the app (if it has not finished) as a task group's cancel scope would."""
        if self.finished.is_set():
            return
        self.cancelling = True
        if self.scope is not None:
            self.scope.cancel()
        else:
            self._deliver_cancellation()

    def _deliver_cancellation(self) -> None:
        # What anyio does for a task in a cancelled scope, without a scope around every request
        # (entering one would cost a third of the whole budget): cancel the task again at every
        # pass of the loop until it ends, as it may swallow one cancellation; but not while it is
        # inside a shielded scope, where anyio waits for the shield to end (here: looks again in
        # a few milliseconds, rather than spinning).
        if self.finished.is_set():
            return
        assert self.loop is not None
        if _shielded(self.task):
            self.loop.call_later(_SHIELD_POLL_SECONDS, self._deliver_cancellation)
            return
        waiter = getattr(self.task, "_fut_waiter", None)
        if not getattr(self.task, "_must_cancel", False) and not (asyncio.isfuture(waiter) and waiter.done()):
            self.task.cancel()
        self.loop.call_soon(self._deliver_cancellation)

    async def join(self) -> None:
        """Wait until the app has finished; if this task is cancelled meanwhile, stop the app first."""
        self.step()
        if not self.finished.is_set():
            try:
                await self.finished.wait()
            except BaseException:
                # The request is cancelled: stop the app, and wait for it however often this task
                # is cancelled again (a shield stops anyio's cancellation, not asyncio's own).
                self.cancel()
                while not self.finished.is_set():
                    try:
                        with anyio.CancelScope(shield=True):
                            await self.finished.wait()
                    except BaseException:
                        continue
                raise
        if self.error is not None:
            error, self.error = self.error, None
            raise error
