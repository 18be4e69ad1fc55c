"""Each of the package's middleware checks its options where it is registered, not on the first request.

Starlette builds the middleware stack lazily, on the first request or lifespan event: an option
that a middleware refuses then fails there, far from the line that gave it. Under uvicorn's default
`--lifespan auto` that failure is logged as "ASGI 'lifespan' protocol appears unsupported", the
server reports "Application startup complete", and every request gets a bare 500 (issue 16).

So `App` and `MiddlewareMixin` (at `App(middleware=[...])` and `add_middleware`) and `install()`
(for the app's middleware so far, and each later `add_middleware`) call `check_options` of each
middleware that is one of the package's, with the options given. It builds the middleware around
an app that is never called, so that exactly the checks of its `__init__` (a user subclass's too)
raise, with their own sentences. Starlette gives a plain `Starlette()` or `FastAPI()` no hook when
a middleware is added: there the errors still come when the stack is built.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

__all__ = ["CheckedOptions", "check_dispatch", "check_middleware", "is_async"]


async def _never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("starlette_mw built this middleware only to check its options; it serves no request.")


class CheckedOptions:
    """Gives a middleware class `check_options`, which `App`, `MiddlewareMixin` and `install()` call."""

    @classmethod
    def check_options(cls, *args: Any, **kwargs: Any) -> None:
        """Raise the `TypeError` or `ValueError` that `cls(app, *args, **kwargs)` would raise.

        Builds one around an app that is never called, and drops it; Starlette builds the real one
        later. A subclass whose `__init__` does more than check and prepare (registers a metric,
        opens a file) can override this to check its options without doing that twice.
        """
        build: Callable[..., object] = cls  # a middleware class: it takes the app, then its options
        build(_never_called, *args, **kwargs)


def check_middleware(middleware: Iterable[Middleware]) -> None:
    """Check the options of each entry whose class is one of the package's middleware (or a subclass).

    Other middleware are left alone: building them is theirs to do, once.
    """
    for cls, args, kwargs in middleware:
        if isinstance(cls, type) and issubclass(cls, CheckedOptions):
            cls.check_options(*args, **kwargs)


def is_async(func: Any) -> bool:
    """An `async def` function, a partial of one, or an object whose `__call__` is one (as FastAPI allows)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def check_dispatch(func: Any) -> None:
    """Refuse a dispatch function that `call_next` could not run: not async, or not of (request, call_next)."""
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
