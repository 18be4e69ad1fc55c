"""`starlette_mw/_engine/asyncio_private.py` is the one module that touches private names of asyncio or anyio.

The engine's behaviour through its fallback (the ordinary task start) is covered by running
tests/engine/test_tasks.py and tests/engine/test_tasks_cancellation.py both ways (the `engine_start` fixture).
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio._backends._asyncio
import pytest

import starlette_mw

PACKAGE = Path(starlette_mw.__file__).parent
ALLOWED = PACKAGE / "_engine" / "asyncio_private.py"


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names() -> set[str]:
    """The private attributes of the objects the engine handles (asyncio's tasks and futures,
    anyio's cancel scopes and the task state it keeps for them) and of asyncio's task modules."""
    objects: list[object] = [
        asyncio.Task,
        asyncio.Future,
        anyio._backends._asyncio.CancelScope(),
        anyio._backends._asyncio.TaskState(None, None),
    ]
    names: set[str] = set()
    for obj in objects:
        names.update(dir(obj))
        names.update(getattr(obj, "__dict__", {}))
    return {name for name in names if is_private(name)}


def module_globals() -> set[str]:
    """The private globals of asyncio's task modules, which `getattr(asyncio.tasks, "...")` would reach."""
    return {
        name for module in (asyncio.tasks, asyncio.futures, asyncio.events) for name in vars(module) if is_private(name)
    }


MODULES = frozenset({"asyncio", "anyio", "sniffio", "trio"})


def uses(tree: ast.AST, private: set[str], strings: set[str]) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"asyncio", "anyio"}:
            if any(is_private(part) for part in node.module.split(".")):
                yield f"line {node.lineno}: from {node.module} import ..."
            yield from (f"line {node.lineno}: imports {a.name}" for a in node.names if is_private(a.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in {"asyncio", "anyio"} and any(is_private(part) for part in parts):
                    yield f"line {node.lineno}: import {alias.name}"
        elif isinstance(node, ast.Attribute) and (
            node.attr in private or (is_private(node.attr) and ast.unparse(node.value).split(".")[0] in MODULES)
        ):
            yield f"line {node.lineno}: .{node.attr}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in private | strings:
            yield f"line {node.lineno}: {node.value!r}"


# Names asyncio or anyio also happen to use, which the package uses for other objects of its own:
# Starlette's Request keeps its body and stream state under these (as Starlette's own code reads them).
OTHER_OWNERS = frozenset({"_body", "_stream_consumed", "_is_disconnected", "_receive", "_send"})


@pytest.mark.parametrize(
    "path", sorted(set(PACKAGE.rglob("*.py")) - {ALLOWED}), ids=lambda path: path.relative_to(PACKAGE).as_posix()
)
def test_no_private_name_of_asyncio_or_anyio_outside_its_module(path: Path) -> None:
    private = private_names() - OTHER_OWNERS
    found = list(uses(ast.parse(path.read_text(), str(path)), private, module_globals()))
    assert found == [], f"{path.name} uses private names of asyncio or anyio; move them to {ALLOWED.name}"


def test_the_check_sees_what_the_private_module_uses() -> None:
    found = " ".join(uses(ast.parse(ALLOWED.read_text()), private_names(), module_globals()))
    for name in ("_enter_task", "_leave_task", "_task_states", "_fut_waiter", "_must_cancel", "_parent_scope"):
        assert name in found
    assert "anyio._backends._asyncio" in found
