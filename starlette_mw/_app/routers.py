"""Middleware on a router, a Mount or a route, FastAPI's `APIRouter` and `APIRoute` included.

Starlette builds a route's `middleware=` into the route's app when the route is created, and
FastAPI's `APIRouter` takes none. Here the middleware registered on an object is kept on that
object (`RouteLayers`), and an `_Entry` stands where the object hands a request on: a route's
or Mount's `handle`, a router's `middleware_stack` (what `Router.__call__` runs) and, for
FastAPI's `APIRouter`, its `handle` too, which is how an included router is reached
(`include_router` keeps the router and hands it the requests of its routes rather than copying
them). Each `add` rebuilds the entries' stacks at once, so a registration made after the app
started, or after `include_router`, applies to the next request, and a bad middleware option
fails where it is written.

Each layer stands behind a `_Recorder`, which does nothing unless `trace()` is recording the
request: then it records the layer in the trace, in the order a request meets it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeAlias

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._layers import layer_name

__all__ = ["ENDPOINT", "TRACE_EVENTS", "RouteLayers", "Target", "add_middleware", "check_target", "route_layers"]

# Any route, as `router.routes` types them; check_target() refuses those that take no middleware here.
Target: TypeAlias = "Starlette | Router | BaseRoute"

# (the traced app, the events list of the trace recording the request), which tracing's innermost
# app-level point puts in the scope: shared through the scope, so that tracing needs nothing here
# but this key.
TRACE_EVENTS = "starlette_mw.trace.events"
ENDPOINT = "endpoint"
_ATTRIBUTE = "_starlette_mw_layers"

ACCEPTED = "a Starlette or FastAPI app, a Router or FastAPI APIRouter, a Mount, or a Route or FastAPI APIRoute"


def check_target(target: object) -> None:
    """Raise a `TypeError` unless middleware can be registered on `target`."""
    if not isinstance(target, Starlette | Router | Mount | Route):
        raise TypeError(
            f"Middleware cannot be registered on {target!r} (type {type(target).__name__}); pass {ACCEPTED}."
        )


def _trace_events(scope: Scope) -> list[str] | None:
    """The events of the trace recording this request, while it is inside the traced app."""
    traced: tuple[object, list[str]] | None = scope.get(TRACE_EVENTS) if scope["type"] == "http" else None
    # An untraced app mounted in a traced one (Starlette puts each app in scope["app"]): the trace
    # lists none of that app's layers, so none of its routes' either.
    if traced is None or traced[0] is not scope.get("app"):
        return None
    return traced[1]


class _Mark:
    """The innermost point of an object's layers: in a trace, the request reached what they wrap."""

    traces = True

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        events = _trace_events(scope)
        if events is not None:
            events.append(ENDPOINT)
        await self.app(scope, receive, send)


class _Recorder:
    """Stands in front of one layer and records it, when the request is traced."""

    traces = True

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        events = _trace_events(scope)
        if events is None:
            await self.app(scope, receive, send)
            return
        # The layers outside marked the request as reaching their endpoint; it reaches this layer
        # first, and this object's own mark follows if the request gets further.
        if events and events[-1] == ENDPOINT:
            events.pop()
        events.append(self.name)

        async def leave(message: Message) -> None:
            if message["type"] == "http.response.start":
                events.append(self.name)
            await send(message)

        await self.app(scope, receive, leave)


class _Entry:
    """Runs an object's layers, then what it replaced (the route's `handle`, the router's stack)."""

    def __init__(self, inner: ASGIApp, methods: Collection[str] | None) -> None:
        self.inner = inner
        self.methods = methods
        self.app: ASGIApp = inner
        self.layers: tuple[Any, ...] = ()

    def build(self, middleware: list[Middleware]) -> None:
        app: ASGIApp = _Mark(self.inner)
        layers = []
        for cls, args, kwargs in middleware:  # the first registered ends up innermost
            layer = cls(app, *args, **kwargs)
            layers.append(layer)
            app = _Recorder(layer, layer_name(layer))
        self.app = app
        self.layers = tuple(reversed(layers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["type"] == "http" and scope["method"] not in self.methods:
            # The route answers 405 before its own middleware runs, as Starlette's Route does.
            await self.inner(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RouteLayers:
    """The middleware registered on one router, Mount or route, in registration order."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.middleware: list[Middleware] = []
        self.entries = entries

    @property
    def layers(self) -> tuple[Any, ...]:
        """The layers built from the registered middleware, outermost first."""
        return self.entries[0].layers

    def add(self, middleware: Middleware) -> None:
        registered = [*self.middleware, middleware]
        for entry in self.entries:
            entry.build(registered)
        self.middleware = registered


def route_layers(target: object) -> RouteLayers | None:
    """The middleware registered on `target` here, if any."""
    layers: RouteLayers | None = vars(target).get(_ATTRIBUTE) if hasattr(target, "__dict__") else None
    return layers


def _install(target: Router | BaseRoute) -> RouteLayers:
    existing = route_layers(target)
    if existing is not None:
        return existing
    entries = []
    if isinstance(target, Router):
        # Router.__call__ runs `middleware_stack`: the app's router, a Router in a Mount.
        entry = _Entry(target.middleware_stack, None)
        target.middleware_stack = entry
        entries.append(entry)
        handle: Callable[[Scope, Receive, Send], Any] | None = getattr(target, "handle", None)
        if handle is not None:
            # FastAPI's APIRouter: a router included in another is handed requests here.
            entry = _Entry(handle, None)
            target.handle = entry  # type: ignore[attr-defined]
            entries.append(entry)
    else:
        entry = _Entry(target.handle, target.methods if isinstance(target, Route) else None)
        target.handle = entry  # type: ignore[method-assign]
        entries.append(entry)
    layers = RouteLayers(entries)
    setattr(target, _ATTRIBUTE, layers)
    return layers


def add_middleware(target: Target, middleware_class: Callable[..., ASGIApp], /, *args: Any, **kwargs: Any) -> None:
    """Register a middleware class on an app, a router, a Mount or a route, with its options.

    On a router, Mount or route it runs for the requests that reach that object only, inside the
    app's stack; as in the app's stack, the middleware registered last is the outermost. It works
    before or after FastAPI's `include_router`, and after the app started.

        api = APIRouter(prefix="/api")
        starlette_mw.add_middleware(api, TimingMiddleware, exclude="/api/health")
        app.include_router(api)
    """
    check_target(target)
    if not callable(middleware_class):
        raise TypeError(
            f"Middleware {middleware_class!r} is not callable; pass a middleware class such as "
            "TimingMiddleware, whose first argument is the app it wraps, and its options after it."
        )
    if isinstance(target, Starlette):
        target.add_middleware(middleware_class, *args, **kwargs)
        return
    _install(target).add(Middleware(middleware_class, *args, **kwargs))
