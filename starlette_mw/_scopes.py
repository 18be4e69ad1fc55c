"""Which cancel scope the current task is in: how `call_next` knows it may run the app inline.

Dispatch code after `call_next` runs where the app starts its response, which is not always the
task that ran dispatch's code before it. A cancel scope (a timeout, a task group) that dispatch
holds open across `call_next` must be left in the task that entered it, so there the app gets a
task of its own. anyio and trio have no public way to ask for the current scope; this reads the
one field each keeps for it, and if that field is ever gone, every request is taken to hold a
scope, which is always safe and only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

_task_states: Mapping[Any, Any] | None
try:
    from anyio._backends._asyncio import _task_states
except ImportError:  # pragma: no cover - anyio moved it; see the module docstring
    _task_states = None


def current_cancel_scope() -> object:
    """An object that is the same between two calls if and only if the task's cancel scope is."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop running: trio
        return _trio_cancel_status()
    if _task_states is None:
        return object()
    state = _task_states.get(task) if task is not None else None
    return None if state is None else getattr(state, "cancel_scope", object())


def _trio_cancel_status() -> object:
    import trio

    # Every cancel scope and nursery a trio task enters gives it a new `_cancel_status`.
    return getattr(trio.lowlevel.current_task(), "_cancel_status", object())
