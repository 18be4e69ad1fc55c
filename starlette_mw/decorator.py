"""`@app.middleware("http")` for Starlette, as FastAPI has it, registered through `add_middleware`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.types import ASGIApp

from starlette_mw._exchange import DispatchFunction
from starlette_mw.base import HTTPMiddleware
from starlette_mw.errors import ErrorResponseLayer
from starlette_mw.paths import PathFilter, PathPatterns

F = TypeVar("F", bound=DispatchFunction)


def is_async(func: Any) -> bool:
    """An `async def` function, a partial of one, or an object whose `__call__` is one (as FastAPI allows)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def _check_function(func: Any) -> None:
    name = getattr(func, "__qualname__", repr(func))
    if not is_async(func):
        raise TypeError(
            f"Middleware function {name!r} is not an 'async def' function; "
            "write it as 'async def f(request, call_next)' and await call_next(request) inside."
        )
    try:
        signature = inspect.signature(func)
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"Middleware function {name!r} takes {signature}; "
            "it must take two parameters, as in 'async def f(request, call_next)'."
        ) from None


def middleware(
    app: Starlette,
    middleware_type: str,
    *,
    include: PathPatterns = None,
    exclude: PathPatterns = None,
) -> Callable[[F], F]:
    """Register the decorated `async def f(request, call_next)` as middleware of `app`.

    Works on any Starlette or FastAPI instance. Like `add_middleware`, the function registered
    last is the outermost. `include=` / `exclude=` limit it to some paths; other requests skip it
    at almost no cost.

        app = Starlette(routes=routes)

        @starlette_mw.middleware(app, "http", exclude="/health")
        async def add_process_time(request, call_next):
            start = time.perf_counter()
            response = await call_next(request)
            response.headers["X-Process-Time"] = str(time.perf_counter() - start)
            return response
    """
    if middleware_type != "http":
        raise ValueError(
            f'Middleware type {middleware_type!r} is not supported; use @app.middleware("http") '
            "(the only type Starlette and FastAPI define), or write a plain ASGI middleware for websockets."
        )
    PathFilter(include, exclude)  # fail here, at decoration time, on a bad pattern

    def decorator(func: F) -> F:
        _check_function(func)
        app.add_middleware(HTTPMiddleware, dispatch=func, include=include, exclude=exclude)
        return func

    return decorator


class MiddlewareMixin:
    """Gives a Starlette subclass FastAPI's `app.middleware("http")` decorator.

    It also puts the package's middleware headers on the 500 that Starlette renders when an
    endpoint raises, as `starlette_mw.install(app)` does for other apps.

        class App(MiddlewareMixin, Starlette): ...

        app = App(routes=routes)

        @app.middleware("http")
        async def add_server_header(request, call_next):
            response = await call_next(request)
            response.headers["X-Server"] = "starlette"
            return response
    """

    def middleware(
        self,
        middleware_type: str,
        *,
        include: PathPatterns = None,
        exclude: PathPatterns = None,
    ) -> Callable[[F], F]:
        if not isinstance(self, Starlette):
            raise TypeError(
                f"MiddlewareMixin is mixed into {type(self).__name__}, which is not a Starlette app; "
                "list it before Starlette, as in 'class App(MiddlewareMixin, Starlette)'."
            )
        return middleware(self, middleware_type, include=include, exclude=exclude)

    def build_middleware_stack(self) -> ASGIApp:
        # The app's own stack (Starlette's or FastAPI's), inside the layer `install()` adds.
        build_stack: Callable[[], ASGIApp] = super().build_middleware_stack  # type: ignore[misc]
        return ErrorResponseLayer(build_stack())


class App(MiddlewareMixin, Starlette):
    """A Starlette application with `@app.middleware("http")`.

    It takes `Starlette`'s arguments; `MiddlewareMixin` gives it the decorator.

        app = App(routes=[Route("/", homepage)])

        @app.middleware("http", exclude="/health")
        async def add_server_header(request, call_next):
            response = await call_next(request)
            response.headers["X-Server"] = "starlette"
            return response
    """
