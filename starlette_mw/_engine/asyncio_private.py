"""Every private name of asyncio and anyio that `HTTPMiddleware`'s engine touches, each with a fallback.

Nothing outside this module may use a private name of either library (tests/engine/test_asyncio_private.py
checks the whole package with `ast`). What is here, and what happens without it:

- `asyncio.tasks._enter_task` / `_leave_task` (Python 3.11 only), as `enter_task` / `leave_task`:
  make the app's task current while the request's task steps it inline. Python 3.12 starts a
  task eagerly through a public API (`asyncio.Task(..., eager_start=True)`), so these are not
  used there. Missing: the app's task starts the ordinary way.
- A future's `_asyncio_future_blocking` flag, reset as asyncio's own Task does when it resumes a
  coroutine that yielded that future (only around the 3.11 inline steps above).
- A Task's `_must_cancel` and `_fut_waiter`: whether a cancellation is already on its way to the
  task, so it is not asked again. Missing: the task is asked again, which asyncio tolerates.
- anyio's `_task_states` and a cancel scope's `_parent_scope`: whether a task is inside a shielded
  scope (anyio keeps no public record of another task's scopes). Missing: shields are not seen.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import sys
from collections.abc import Callable, Mapping
from typing import Any

# Make a task current, and stop it being current; the request's task calls these around each inline step.
enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = None
leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = None
if sys.version_info < (3, 12):
    enter_task = getattr(asyncio.tasks, "_enter_task", None)
    leave_task = getattr(asyncio.tasks, "_leave_task", None)

# Whether the app can be stepped inline as its own task (Python 3.11 with the names above).
CAN_STEP_AS_TASK = enter_task is not None and leave_task is not None

_task_states: Mapping[Any, Any] | None
try:
    from anyio._backends._asyncio import _task_states
except ImportError:  # pragma: no cover - anyio moved it: shields are then not seen
    _task_states = None


def resuming(future: Any) -> None:
    """Mark a future the coroutine yielded as handled, as asyncio's Task does before resuming it."""
    future._asyncio_future_blocking = False


def cancellation_pending(task: asyncio.Task[Any]) -> bool:
    """Whether `task` will see a CancelledError (or wake up) at its next step without being asked again."""
    if getattr(task, "_must_cancel", False):
        return True
    waiter = getattr(task, "_fut_waiter", None)
    return asyncio.isfuture(waiter) and waiter.done()


def shielded(task: asyncio.Task[Any]) -> bool:
    """Whether the task is inside a shielded anyio cancel scope."""
    state = _task_states.get(task) if _task_states is not None else None
    scope = getattr(state, "cancel_scope", None)
    while scope is not None:
        if getattr(scope, "shield", False):
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False
