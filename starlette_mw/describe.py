"""`describe(app)`: the middleware layers of an app in the order a request meets them."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.routing import Router


def layer_name(layer: Any) -> str:
    """The name `describe()` gives a layer: its class, or the function a `BaseHTTPMiddleware` dispatches to."""
    if isinstance(layer, BaseHTTPMiddleware) and getattr(layer, "dispatch_func", None) is not None:
        dispatch = layer.dispatch_func
        # A bound `dispatch` method names the class; a decorated function names itself.
        if getattr(dispatch, "__self__", None) is not layer:
            while isinstance(dispatch, functools.partial):  # named for the function it wraps
                dispatch = dispatch.func
            return getattr(dispatch, "__name__", type(dispatch).__name__)
    if isinstance(layer, Router):
        return "Router"
    return type(layer).__name__


def layers_from(layer: Any) -> Iterator[Any]:
    """`layer` and each layer inside it, to the router: every Starlette middleware keeps the app it wraps in `.app`."""
    seen = set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        yield layer
        if isinstance(layer, Router):
            return
        layer = getattr(layer, "app", None)


@dataclass(frozen=True)
class Stack:
    """The layers of an app as a request meets them, outermost first.

    `str(stack)` shows the request path and then the response path, which runs in reverse.

        >>> stack = Stack(("ServerErrorMiddleware", "add_process_time", "ExceptionMiddleware", "Router"))
        >>> stack.layers.index("add_process_time")
        1
        >>> print(stack)
        request (outermost first):
          1. ServerErrorMiddleware
          2. add_process_time
          3. ExceptionMiddleware
          4. Router
        response (innermost first):
          1. Router
          2. ExceptionMiddleware
          3. add_process_time
          4. ServerErrorMiddleware
    """

    layers: tuple[str, ...]

    def __str__(self) -> str:
        request = "\n".join(f"  {i}. {name}" for i, name in enumerate(self.layers, 1))
        response = "\n".join(f"  {i}. {name}" for i, name in enumerate(reversed(self.layers), 1))
        return f"request (outermost first):\n{request}\nresponse (innermost first):\n{response}"


def describe(app: Starlette) -> Stack:
    """The middleware stack Starlette builds for `app`, outermost first, ending with its router.

    Starlette's own ServerErrorMiddleware and ExceptionMiddleware are included, and each function
    registered with `@app.middleware("http")` appears under its own name. The stack is built with
    the app's `build_middleware_stack()`, exactly as on the first request, but not installed.

        >>> app = Starlette()  # starlette_mw.App adds ErrorResponseLayer outside ServerErrorMiddleware
        >>> @starlette_mw.middleware(app, "http")
        ... async def add_process_time(request, call_next):
        ...     return await call_next(request)
        >>> app.add_middleware(GZipMiddleware)
        >>> describe(app).layers
        ('ServerErrorMiddleware', 'GZipMiddleware', 'add_process_time', 'ExceptionMiddleware', 'Router')
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"describe() takes a Starlette or FastAPI app, not {type(app).__name__}.")
    stack = app.middleware_stack or app.build_middleware_stack()
    # trace() puts recorders between the layers of a traced app: not layers of the app's own.
    return Stack(tuple(layer_name(layer) for layer in layers_from(stack) if not getattr(layer, "traces", False)))
