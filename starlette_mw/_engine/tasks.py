"""The task the app runs in behind `HTTPMiddleware`, started eagerly on asyncio.

`call_next` must return while the app is still running, so the app needs a task of its own.
Starting one costs little; waiting for it to be scheduled costs passes of the event loop, and
most apps answer without ever waiting on I/O. So on asyncio the app's coroutine takes its first
step at once, inline, but *as its own task*: `asyncio.current_task()` is the app's task, and it
runs in the task's own context.

On Python 3.12 and newer this is asyncio's public eager start (`asyncio.Task(..., eager_start=True)`):
the first step runs inline, and once the app waits on anything its task is an ordinary task.
Python 3.11 has no public way to make a task current, so there the request's task steps the app
inline through asyncio's private `_enter_task` / `_leave_task` (kept in `asyncio_private.py`), and
goes on stepping it for as long as the app only waits on things that are already done (the
middleware's own events, mostly); as soon as the app waits on anything else, its task takes over,
exactly where the app stopped. Without those names, or with a task factory on the loop (which may
wrap the coroutine, as Sentry's does), the app's task starts the ordinary way. On trio the app runs
in a system task; either way the middleware joins it before the request ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Scope

from starlette_mw._engine import asyncio_private as _asyncio_private

# Whether the app's task starts eagerly on asyncio; tests turn it off to run the engine through
# the ordinary start, the fallback of every Python without the private names 3.11 needs.
EAGER_START = sys.version_info >= (3, 12) or _asyncio_private.CAN_STEP_AS_TASK

# At most this many inline steps in a row (3.11): a coroutine that keeps yielding futures that are
# already done is handed to its task, which lets the loop run between steps as asyncio always does.
MAX_INLINE_STEPS = 100


class _Over:
    """An awaitable that is over at once: what `AppTask.until` gives for a state that is already set."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_OVER = _Over()


_SHIELD_POLL_SECONDS = 0.005

_NOTHING: Any = object()  # the app has not been stepped yet, or its task holds what it waits on


class _EagerCoroutine(Coroutine[Any, Any, None]):
    """The app's coroutine as its asyncio task sees it.

    Steps taken inline before the task first runs are replayed to it: its first step receives
    what the app was last waiting on, or learns that the app has already finished.
    """

    __slots__ = ("coro", "owned", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        assert isinstance(coro, types.CoroutineType)  # `AppTask.run()`: a native coroutine, with `cr_frame`
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
        try:
            if self.done:
                raise args[0] if len(args) == 1 else args[1]
            return self.coro.throw(*args)
        finally:
            # The StopIteration that ends the app keeps this frame in its traceback; holding the
            # CancelledError thrown in (and through its traceback every frame of the app, with the
            # app's own objects: a streaming body's generator) would leave them all to the cycle
            # collector, and the generator's `finally` would run whenever that comes (Python 3.12).
            del args

    def close(self) -> None:
        self.coro.close()

    @property
    def done(self) -> bool:
        return self.coro.cr_frame is None  # ended or closed

    def __await__(self) -> Generator[Any, None, None]:  # pragma: no cover - only a task drives it
        raise TypeError("the app's coroutine is driven by its task")

    # What asyncio reads of a task's coroutine for its repr() and get_stack().
    def __getattr__(self, name: str) -> Any:
        if name in _COROUTINE_ATTRIBUTES:
            return getattr(self.coro, name)
        raise AttributeError(name)


_COROUTINE_ATTRIBUTES = frozenset({"__name__", "__qualname__", "cr_code", "cr_frame", "cr_await", "cr_running"})


class AppTask:
    """The app behind the middleware, run as a task of its own: the base of `Exchange`.

    A subclass supplies `app_receive`, `app_send` and `app_ended`. The request's one-way states
    (`finished` here, the exchange's own in the subclass) are plain booleans: most requests set
    them all before anybody waits, so something to wait on is made only when somebody has to
    (`until`). Whoever sets one calls `wake` if anybody waits at all (`waits`).
    """

    __slots__ = (
        "app",
        "app_exc",
        "cancel_scope",
        "cancelled",
        "cancelling",
        "context",
        "eager",
        "error",
        "finished",
        "launched",
        "loop",
        "retry",
        "scope",
        "task",
        "waits",
    )

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.launched = False  # `launch` has started the app's task
        self.finished = False
        self.app_exc: Exception | None = None  # the app failed
        self.waits: dict[str, list[asyncio.Future[None] | anyio.Event]] | None = None

    def until(self, state: str) -> Awaitable[Any]:
        """What to await until the boolean attribute `state` is set and `wake(state)` called.

        Each waiter gets a bare future of its own on asyncio (asyncio cancels the future that a
        cancelled task waits on; and Python 3.11's inline steps can see it is done), an anyio
        event elsewhere.
        """
        if getattr(self, state):
            return _OVER
        waiter: asyncio.Future[None] | anyio.Event
        try:
            waiter = asyncio.get_running_loop().create_future()
        except RuntimeError:  # not asyncio
            waiter = anyio.Event()
        waits = self.waits
        if waits is None:
            self.waits = {state: [waiter]}
        elif state not in waits:
            waits[state] = [waiter]
        else:
            # A cancelled wait leaves its future behind; a wait retried after each cancellation
            # (`wait_despite_cancellation`) would pile them up.
            waiters = waits[state]
            waiters[:] = [other for other in waiters if not (isinstance(other, asyncio.Future) and other.done())]
            waiters.append(waiter)
        return waiter if isinstance(waiter, asyncio.Future) else waiter.wait()

    def wake(self, state: str) -> None:
        """Wake whoever waits for `state`, which has just been set; only if `waits` is not None."""
        waits = self.waits
        assert waits is not None
        waiters = waits.pop(state, ())
        if not waits:
            self.waits = None  # nobody waits any more: setting the other states costs nothing again
        for waiter in waiters:
            if not isinstance(waiter, asyncio.Future):
                waiter.set()
            elif not waiter.done():  # a cancelled waiter leaves a cancelled future
                waiter.set_result(None)

    async def app_receive(self) -> Message:
        raise NotImplementedError

    async def app_send(self, message: Message) -> None:
        raise NotImplementedError

    def app_ended(self) -> None:
        """Called once the app has ended, however it did, just before `finished` is set."""

    def launch(self) -> None:
        """Start the app's task: at once, inline, where the loop allows (see the module's docstring)."""
        self.cancel_scope: anyio.CancelScope | None = None  # trio: the system task is cancelled through it
        self.cancelling = False
        self.error: BaseException | None = None  # the app's task ended with something else than an Exception
        self.eager: _EagerCoroutine | None = None
        self.retry: asyncio.Handle | None = None  # the next attempt of `deliver_cancellation`
        self.cancelled: type[BaseException] = asyncio.CancelledError
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # trio
            self.loop = None
            import trio

            self.cancelled = trio.Cancelled
            self.cancel_scope = anyio.CancelScope()
            trio.lowlevel.spawn_system_task(self.run, context=contextvars.copy_context())
            self.launched = True
            return
        self.context = contextvars.copy_context()
        if not EAGER_START or self.loop.get_task_factory() is not None:
            # A task factory may wrap the coroutine in one of its own (Sentry's does), which no
            # inline step can drive: the task starts the ordinary way.
            coro = self.run()
            self.task = self.loop.create_task(coro, context=self.context)
            # A task cancelled (or failed by the factory's wrapper) before `run` began: `_ended` ends it.
            self.task.add_done_callback(functools.partial(self._ended, coro))
        elif sys.version_info >= (3, 12):
            self.task = asyncio.Task(self.run(), loop=self.loop, context=self.context, eager_start=True)
        else:
            self.eager = _EagerCoroutine(self.run())
            self.task = self.loop.create_task(self.eager, context=self.context)
        self.launched = True

    async def run(self) -> None:
        # Nothing may escape: a trio system task that raises crashes the whole run, and on asyncio
        # nobody awaits the task. `join` raises it in the request's task instead.
        try:
            if self.cancel_scope is None:
                await self.app(self.scope, self.app_receive, self.app_send)
            else:
                with self.cancel_scope:
                    await self.app(self.scope, self.app_receive, self.app_send)
        except Exception as exc:
            self.app_exc = exc
        except BaseException as exc:
            if not (self.cancelling and isinstance(exc, asyncio.CancelledError)):
                self.error = exc
        finally:
            self.finish()

    def _ended(self, coro: Coroutine[Any, Any, None], task: asyncio.Task[Any]) -> None:
        if self.finished:
            return
        coro.close()  # never started: no "never awaited" warning
        if not task.cancelled():
            self.error = task.exception()
        elif not self.cancelling:
            self.error = asyncio.CancelledError()
        self.finish()

    def finish(self) -> None:
        """The app has ended: tell the subclass, then whoever waits, and stop retrying a cancellation."""
        self.app_ended()
        self.finished = True
        if self.waits is not None:
            self.wake("finished")
        if self.retry is not None:
            # A pending retry holds this object, and with it the whole request, until the loop runs it.
            self.retry.cancel()
            self.retry = None

    def step(self) -> None:
        """Python 3.11: run the app inline, as its task, while it waits only on futures that are already done.

        Anything else it yields (a pending future, a bare `yield` that lets the loop run, a bad
        yield) is left to its task, which takes over with asyncio's own handling of it; so is a
        cancellation of the task, and the app after `MAX_INLINE_STEPS` steps in a row.
        """
        eager = self.eager
        if eager is None or eager.owned or self.finished or self.cancelling:
            return
        enter, leave = _asyncio_private.enter_task, _asyncio_private.leave_task
        assert enter is not None and leave is not None and self.loop is not None
        loop, task, coro = self.loop, self.task, eager.coro
        caller = asyncio.current_task(loop)
        assert caller is not None
        waiting_on = eager.waiting_on
        steps = 0
        while waiting_on is _NOTHING or (isinstance(waiting_on, asyncio.Future) and waiting_on.done()):
            if steps == MAX_INLINE_STEPS or task.cancelling():
                break
            if waiting_on is not _NOTHING:
                _asyncio_private.resuming(waiting_on)
            leave(loop, caller)
            enter(loop, task)
            try:
                waiting_on = self.context.run(coro.send, None)
            except StopIteration:  # `run` lets nothing else out, and has set `finished`
                return
            finally:
                leave(loop, task)
                enter(loop, caller)
            steps += 1
        eager.waiting_on = waiting_on

    def cancel(self) -> None:
        """Cancel the app (if it has not finished) as a task group's cancel scope would."""
        if self.finished or self.cancelling:  # once is enough: `deliver_cancellation` retries until it ends
            return
        self.cancelling = True
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()
        else:
            self.deliver_cancellation()

    def deliver_cancellation(self) -> None:
        # What anyio does for a task in a cancelled scope, without a scope around every request
        # (entering one would cost a third of the whole budget): cancel the task again at every
        # pass of the loop until it ends, as it may swallow one cancellation; but not while it is
        # inside a shielded scope, where anyio waits for the shield to end (here: looks again in
        # a few milliseconds, rather than spinning).
        if self.finished:
            return
        assert self.loop is not None
        if _asyncio_private.shielded(self.task):
            self.retry = self.loop.call_later(_SHIELD_POLL_SECONDS, self.deliver_cancellation)
            return
        if not _asyncio_private.cancellation_pending(self.task):
            self.task.cancel()
        self.retry = self.loop.call_soon(self.deliver_cancellation)

    async def join(self) -> None:
        """Wait until the app has finished; if this task is cancelled meanwhile, stop the app first."""
        if self.eager is not None:
            self.step()
        if not self.finished:
            try:
                if self.loop is not None:
                    # Dispatch has just woken the app's task, which mostly finishes in the next pass
                    # of the loop: one bare pass, queued behind it, then finds it done. Waiting on
                    # `finished` instead costs a future, and a second pass to wake this task.
                    await asyncio.sleep(0)
                if not self.finished:
                    await self.until("finished")
            except self.cancelled:
                # The request is cancelled: stop the app, and wait for it.
                self.cancel()
                await self.wait_despite_cancellation()
                raise
            except BaseException:
                self.cancel()  # stop the app, and let the failure out at once
                raise
        if self.error is not None:
            try:
                raise self.error
            finally:
                self.error = None  # raised from the attribute: a local would make a cycle with its traceback

    async def wait_despite_cancellation(self) -> None:
        """Wait for the app to end, however often this task is cancelled again meanwhile.

        A shield stops anyio's cancellation, not asyncio's own. Each cancellation is one pass of
        the loop, so this waits rather than spins; anything but a cancellation (the wait itself
        failing) propagates with its traceback instead of being retried.
        """
        while not self.finished:
            try:
                with anyio.CancelScope(shield=True):
                    await self.until("finished")
            except self.cancelled:
                continue
