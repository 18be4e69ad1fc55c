"""`HTTPMiddleware`'s overhead against `BaseHTTPMiddleware`'s in instructions per request, counted by valgrind.

`overhead.py` times the layers in-process, which a busy machine blurs. This counts instead: each
app (bare, `BaseHTTPMiddleware`, `HTTPMiddleware` with the tutorial's dispatch function) answers
N in-process requests under `valgrind --tool=callgrind`; a run with N requests minus a run with
none, divided by N, is one request's cost, and a layer's overhead is that minus the bare app's.

It also counts what bounds that overhead from below, so that a missed aim shows where the
instructions go: `HTTPMiddleware` with a dispatch that only returns `await call_next(request)`
(the rest of the tutorial's cost is the function's own work), and reference layers of a few lines
that run the app in a task of its own, as `call_next` must (it returns while the app is still
running). One lets the task run to its end (Python 3.12+, started eagerly); the other holds it
at its response start until the request's task lets it go on, as `call_next` does so that
dispatch sees the headers before they go out. That one starts the task as the engine does:
eagerly on 3.12+; on 3.11, which has no public eager start, the request's task steps the app as
its task through the asyncio names the engine keeps in `asyncio_private.py`.

    python benchmarks/overhead_instructions.py [--requests N]   # ~2 min per Python
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Run as `python benchmarks/overhead_instructions.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.apps import app_with, bare, base_http_middleware, http_middleware
from benchmarks.instructions import count_in_process
from benchmarks.overhead import HTTP_MIDDLEWARE_AIM
from starlette_mw import CallNext, HTTPMiddleware
from starlette_mw._engine import asyncio_private

EAGER_START = sys.version_info >= (3, 12)  # asyncio's public eager start


class _Stepped(Coroutine[Any, Any, None]):
    """The app's coroutine as its task sees it when the request's task steps it: over once stepped to its end."""

    def __init__(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.coroutine = coroutine
        self.over = False

    def send(self, value: Any) -> Any:
        if self.over:
            raise StopIteration
        return self.coroutine.send(value)

    def throw(self, *args: Any) -> Any:
        return self.coroutine.throw(*args)

    def close(self) -> None:
        self.coroutine.close()

    def __await__(self) -> Any:
        raise TypeError("only its task drives it")


class TaskReference:
    """Runs the app in a task of its own; with `pause`, holds the task at its response start.

    Nothing else: no request object, no response object, no error handling. What remains is what
    asyncio charges for a task and, with `pause`, for stopping it once and waking it. `eager`
    starts the task with asyncio's public eager start (Python 3.12+); `inline` (3.11) steps the
    app as its task from the request's task, which suits only an app that waits on nothing else.
    """

    def __init__(self, app: ASGIApp, *, eager: bool = False, inline: bool = False, pause: bool = True) -> None:
        self.app = app
        self.eager = eager
        self.inline = inline
        self.pause = pause

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.pause:
            await self.start(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started, go_on = loop.create_future(), loop.create_future()

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(None)
                await go_on
            await send(message)

        if self.inline:
            self.step_inline(loop, self.app(scope, receive, app_send), go_on)
            return
        task = self.start(scope, receive, app_send)
        if not started.done():  # (an eager start has run the endpoint to its response start already)
            await started
        go_on.set_result(None)
        await asyncio.sleep(0)  # one pass of the loop, in which the woken task finishes
        await task

    def start(self, scope: Scope, receive: Receive, send: Send) -> asyncio.Task[None]:
        # (every app here is an `async def` or a class with one: calling it makes a coroutine)
        coroutine = cast(Coroutine[Any, Any, None], self.app(scope, receive, send))
        loop = asyncio.get_running_loop()
        if self.eager:
            return asyncio.Task(coroutine, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return loop.create_task(coroutine)

    @staticmethod
    def step_inline(loop: asyncio.AbstractEventLoop, app: Any, go_on: asyncio.Future[None]) -> None:
        enter, leave = asyncio_private.enter_task, asyncio_private.leave_task
        caller = asyncio.current_task(loop)
        assert enter is not None and leave is not None and caller is not None
        stepped = _Stepped(app)
        task = loop.create_task(stepped)

        def step() -> Any:
            leave(loop, caller)
            enter(loop, task)
            try:
                return stepped.coroutine.send(None)
            except StopIteration:
                stepped.over = True
                return None
            finally:
                leave(loop, task)
                enter(loop, caller)

        waiting_on = step()  # to the response start, where it waits on go_on
        go_on.set_result(None)
        asyncio_private.resuming(waiting_on)
        step()  # to its end


async def call_next_only(request: Request, call_next: CallNext) -> Response:
    return await call_next(request)


FACTORIES: dict[str, Callable[[], Starlette]] = {
    "bare": bare,
    "BaseHTTPMiddleware": base_http_middleware,
    "HTTPMiddleware": http_middleware,
    "HTTPMiddleware, dispatch only awaits call_next": lambda: app_with(
        Middleware(HTTPMiddleware, dispatch=call_next_only)
    ),
}
# The least a task held at its response start costs, started as the engine starts it on this Python.
HELD = (
    "reference: eager task, held once at its response start"
    if EAGER_START
    else "reference: task stepped inline, held once at its response start"
)
if EAGER_START:
    FACTORIES["reference: eager task, run to its end"] = lambda: app_with(
        Middleware(TaskReference, eager=True, pause=False)
    )
FACTORIES[HELD] = lambda: app_with(Middleware(TaskReference, eager=EAGER_START, inline=not EAGER_START))


def main(argv: Sequence[str] | None = None) -> int:
    cost, requests = count_in_process(__file__, __doc__, FACTORIES, argv)
    overhead = {label: value - cost["bare"] for label, value in cost.items()}
    print(f"Python {sys.version.split()[0]}, asyncio, in-process; {requests} requests per app\n")
    print("| app | instructions / request | overhead over bare |")
    print("|---|---:|---:|")
    for label in FACTORIES:
        print(f"| {label} | {cost[label]:,.0f} | {overhead[label]:+,.0f} |")
    ratio = overhead["HTTPMiddleware"] / overhead["BaseHTTPMiddleware"]
    met = "met" if ratio <= HTTP_MIDDLEWARE_AIM else "not met"
    print(f"\nHTTPMiddleware overhead / BaseHTTPMiddleware overhead: {ratio:.3f}; aim {HTTP_MIDDLEWARE_AIM}: {met}")
    budget = overhead["BaseHTTPMiddleware"] * HTTP_MIDDLEWARE_AIM
    own_work = overhead["HTTPMiddleware"] - overhead["HTTPMiddleware, dispatch only awaits call_next"]
    print(f"The aim allows {budget:,.0f} instructions; the dispatch function's own work takes {own_work:,.0f} of them.")
    held = overhead[HELD]
    print(
        f"A task held once at its response start costs {held:,.0f} by itself: {own_work + held:,.0f} with the "
        f"dispatch function's work, {budget - own_work - held:+,.0f} left for everything else."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
