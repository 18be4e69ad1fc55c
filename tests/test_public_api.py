"""`starlette_mw.__all__` is sorted and is exactly the public API."""

from __future__ import annotations

import inspect
import types

import starlette_mw


def test_all_is_sorted_without_duplicates() -> None:
    assert starlette_mw.__all__ == sorted(set(starlette_mw.__all__))


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from starlette_mw import *", namespace)
    del namespace["__builtins__"]
    assert sorted(namespace) == starlette_mw.__all__
    for name in starlette_mw.__all__:
        assert namespace[name] is getattr(starlette_mw, name)


def test_no_other_public_names() -> None:
    public = {
        name
        for name, value in vars(starlette_mw).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(starlette_mw.__all__)


def test_public_classes_and_functions_have_docstrings() -> None:
    for name in starlette_mw.__all__:
        value = getattr(starlette_mw, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"starlette_mw.{name} has no docstring"


def test_add_middleware_is_the_router_and_route_registration() -> None:
    from starlette_mw._app.routers import add_middleware

    assert starlette_mw.add_middleware is add_middleware
    assert "add_middleware" in starlette_mw.__all__
