"""`describe(app)`: the middleware layers of an app in the order a request meets them, and of its routes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, Router

from starlette_mw._app.routers import route_layers
from starlette_mw._layers import layer_name, layers_from


@dataclass(frozen=True)
class RouteStack:
    """The middleware of a router, Mount or route inside an app, outermost first.

    `path` is the full path it answers under (a router's or Mount's prefix); `routes` are the
    routes inside it that have middleware of their own, which a request meets after these layers.
    """

    kind: str
    path: str
    layers: tuple[str, ...]
    routes: tuple[RouteStack, ...] = ()

    def lines(self, indent: str) -> Iterator[str]:
        yield f"{indent}{self.kind} {self.path!r}:"
        yield from (f"{indent}  {i}. {name}" for i, name in enumerate(self.layers, 1))
        for route in self.routes:
            yield from route.lines(indent + "  ")


@dataclass(frozen=True)
class Stack:
    """The layers of an app as a request meets them, outermost first.

    `str(stack)` shows the request path and then the response path, which runs in reverse, then
    each router, Mount and route with middleware of its own (`routes`), indented by nesting.

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
    routes: tuple[RouteStack, ...] = ()

    def __str__(self) -> str:
        request = "\n".join(f"  {i}. {name}" for i, name in enumerate(self.layers, 1))
        response = "\n".join(f"  {i}. {name}" for i, name in enumerate(reversed(self.layers), 1))
        text = f"request (outermost first):\n{request}\nresponse (innermost first):\n{response}"
        if not self.routes:
            return text
        routes = "\n".join(line for route in self.routes for line in route.lines("  "))
        return f"{text}\nroutes with middleware, inside the app's stack (outermost first):\n{routes}"


def _starlette_layers_and_app(start: Any) -> list[Any]:
    """The `middleware=` layers Starlette built from `start` inward, then the app they wrap."""
    return [layer for layer in layers_from(start) if not getattr(layer, "traces", False)]


def _starlette_layers(start: Any) -> list[Any]:
    return _starlette_layers_and_app(start)[:-1]


def _own_layers(obj: Any) -> tuple[str, ...]:
    """The layers a router, Mount or route runs, outermost first: those registered here, then its `middleware=`."""
    registered = route_layers(obj)
    layers = list(registered.layers) if registered is not None else []
    if isinstance(obj, Router):
        # Registered layers stand in front of the stack Starlette built from `middleware=`.
        stack = obj.middleware_stack
        layers += _starlette_layers(registered.entries[0].inner if registered is not None else stack)
    elif isinstance(obj, Route | Mount):
        layers += _starlette_layers(obj.app)
    return tuple(layer_name(layer) for layer in layers)


def _children(obj: Any, prefix: str) -> Iterator[tuple[Any, str]]:
    """The routes inside a router, Mount or FastAPI inclusion, each with the full path prefix it answers under."""
    if isinstance(obj, Mount):
        # What the Mount wraps: the Router that `routes=` made, or the app given as `app=`.
        mounted = _starlette_layers_and_app(obj.app)[-1]
        mounted = mounted.router if isinstance(mounted, Starlette) else mounted
        if isinstance(mounted, Router):
            yield mounted, prefix + obj.path
        return
    routes: list[BaseRoute] = getattr(obj, "routes", None) or []
    for route in routes:
        # FastAPI keeps an included APIRouter as is, behind a route that holds it and its prefix.
        included = getattr(route, "original_router", None)
        if isinstance(included, Router):
            yield included, prefix + getattr(getattr(route, "include_context", None), "prefix", "")
        else:
            yield route, prefix


def _route_stacks(obj: Any, path: str) -> tuple[RouteStack, ...]:
    """The RouteStacks of `obj` (if it has layers) or else of the routes inside it."""
    inner = tuple(stack for child, prefix in _children(obj, path) for stack in _route_stacks(child, prefix))
    layers = _own_layers(obj)
    if not layers:
        return inner
    if isinstance(obj, Route | Mount):
        path += obj.path
    elif isinstance(getattr(obj, "prefix", None), str):  # an APIRouter's prefix, which its routes' paths hold
        path += obj.prefix
    return (RouteStack(type(obj).__name__, path or "/", layers, inner),)


def describe(app: Starlette) -> Stack:
    """The middleware stack Starlette builds for `app`, outermost first, ending with its router.

    Starlette's own ServerErrorMiddleware and ExceptionMiddleware are included, and each function
    registered with `@app.middleware("http")` appears under its own name. The stack is built with
    the app's `build_middleware_stack()`, exactly as on the first request, but not installed.
    `routes` lists the routers, Mounts and routes with middleware of their own, nested.

        >>> app = Starlette()  # starlette_mw.App has ErrorResponseMiddleware in its place
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
    layers = tuple(layer_name(layer) for layer in layers_from(stack) if not getattr(layer, "traces", False))
    return Stack(layers, _route_stacks(app.router, ""))
