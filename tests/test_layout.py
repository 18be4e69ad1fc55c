"""The package's imports: no circle, and no middleware importing another (they cooperate through the scope).

Read with `ast` from the source, imports inside functions and under `TYPE_CHECKING` included: a
circle that only a lazy import keeps from failing is still a circle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import starlette_mw

PACKAGE = Path(starlette_mw.__file__).parent

# The middleware, each with what belongs to it alone: a folder, or one module. None imports another.
MIDDLEWARE = ("_cors", "_timing", "_redirects", "_engine.http_middleware", "_app.errors")
# What any of them may use: the engine's base and the modules shared by all.
SHARED = ("_engine.plain", "_engine.exchange", "_engine.parts", "_engine.tasks", "_engine.asyncio_private")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The package's modules that module `name` imports ("" is the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            # `from starlette_mw._engine import tasks` imports the module tasks.
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for target in targets:
            if target == "starlette_mw" or target.startswith("starlette_mw."):
                inner = target.removeprefix("starlette_mw").removeprefix(".")
                if inner in MODULES and inner != name:
                    found.add(inner)
    found.discard("")  # the package's face: every submodule's parent, not an edge
    return found


GRAPH = {name: imports(name) for name in MODULES}


def unit_of(name: str) -> str | None:
    return next((unit for unit in MIDDLEWARE if name == unit or name.startswith(unit + ".")), None)


def test_the_check_reads_the_imports() -> None:
    assert "_request_record" in GRAPH["_cors.middleware"]
    assert "_engine.plain" in GRAPH["_timing.middleware"]
    assert "_engine.tasks" in GRAPH["_engine.exchange"]


def test_no_import_circle() -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(GRAPH[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


@pytest.mark.parametrize("name", sorted(name for name in MODULES if unit_of(name) is not None))
def test_no_middleware_imports_another(name: str) -> None:
    others = sorted(imported for imported in GRAPH[name] if unit_of(imported) not in (None, unit_of(name)))
    assert others == [], f"{name} imports {others}; cooperate through the request's record (_request_record.py)"


@pytest.mark.parametrize(
    "name",
    sorted(name for name in MODULES if name.startswith("_") and not name.startswith("__") and "." not in name),
)
def test_shared_modules_import_no_middleware_and_no_app_glue(name: str) -> None:
    # _http, _paths, _layers, _registration, _request_record, _starlette_routing: below every feature.
    bad = sorted(imported for imported in GRAPH[name] if unit_of(imported) or imported.startswith("_app"))
    assert bad == []


@pytest.mark.parametrize("name", sorted(SHARED))
def test_the_engine_base_imports_no_middleware(name: str) -> None:
    assert sorted(imported for imported in GRAPH[name] if unit_of(imported) or imported.startswith("_app")) == []
