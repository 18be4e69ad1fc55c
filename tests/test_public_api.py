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


def test_each_public_object_reports_its_public_home() -> None:
    # Type aliases (`CallNext`, `DispatchFunction`, `TimingAllowOrigin`) are shared typing objects with
    # no module of their own; every class and function names the module a user imports it from.
    import starlette_mw.testing

    for package in (starlette_mw, starlette_mw.testing):
        for name in package.__all__:
            value = getattr(package, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert value.__module__ == package.__name__, f"{package.__name__}.{name}"


def test_no_module_shares_a_name_with_what_the_package_exports() -> None:
    # `import starlette_mw.timing as t` would give the function; no module of the package may hide behind one.
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(starlette_mw.__path__)}
    assert modules & set(starlette_mw.__all__) == set()
