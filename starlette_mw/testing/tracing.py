"""`trace(app)`: the order in which a request entered and left the app's middleware layers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._app.routers import ENDPOINT, TRACE_EVENTS
from starlette_mw._layers import layer_name

__all__ = ["ENDPOINT", "Trace", "trace"]

_SCOPE_KEY = "starlette_mw.trace"


class Trace:
    """What `trace(app)` records: for each HTTP request, the layers in the order it met them.

    A layer's name appears when the request enters it and again when the response start leaves
    it, with `"endpoint"` for the app behind the last middleware (Starlette's exception handling,
    the router and the endpoint):

        ["CORSMiddleware", "TimingMiddleware", "add_process_time", "endpoint",
         "add_process_time", "TimingMiddleware", "CORSMiddleware"]

    A layer that answers by itself (a CORS preflight, a redirect) shows no "endpoint"; one whose
    response never started (it raised) appears only once. Middleware registered on the router,
    Mount or route that handles the request follows the app's, and "endpoint" is then what they
    wrap.
    """

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self._lock = threading.Lock()  # TestClient runs the app on a thread of its own
        # One key per trace, so that a traced app mounted in another traced app records apart.
        self._key = f"{_SCOPE_KEY}.{id(self)}"

    @property
    def last(self) -> list[str]:
        """The layers of the latest request."""
        if not self.requests:
            raise LookupError("The traced app has not seen an HTTP request yet.")
        return self.requests[-1]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _events(self, scope: Scope) -> list[str]:
        events: list[str] | None = scope.get(self._key)
        if events is None:
            events = scope[self._key] = []
            with self._lock:
                self.requests.append(events)
        return events


class _Layer:
    """Stands in front of one middleware: records the request entering it and the response leaving it."""

    traces = True  # describe() leaves it out

    def __init__(self, app: ASGIApp, name: str, trace: Trace) -> None:
        self.app = app
        self.name = name
        self.trace = trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        events = self.trace._events(scope)
        events.append(self.name)

        async def leave(message: Message) -> None:
            if message["type"] == "http.response.start":
                events.append(self.name)
            await send(message)

        await self.app(scope, receive, leave)


class _Endpoint:
    """The innermost traced point: the app behind the last middleware."""

    traces = True

    def __init__(self, app: ASGIApp, *, trace: Trace) -> None:
        self.app = app
        self.trace = trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            events = self.trace._events(scope)
            events.append(ENDPOINT)
            # The layers of the routers and routes inside this app record themselves here.
            scope[TRACE_EVENTS] = (scope.get("app"), events)
        await self.app(scope, receive, send)


def _traced(cls: Callable[..., ASGIApp], trace: Trace) -> Callable[..., ASGIApp]:
    def build(app: ASGIApp, *args: Any, **kwargs: Any) -> ASGIApp:
        layer = cls(app, *args, **kwargs)
        return _Layer(layer, layer_name(layer), trace)

    return build


def trace(app: Starlette) -> Trace:
    """Record the order of the app's middleware layers for every HTTP request it serves.

    Call it before the app's first request. Each middleware the app registered (decorated
    functions, the package's, Starlette's and your own classes) is wrapped as the stack is built;
    Starlette's fixed outer and inner layers are not listed.

        recorded = trace(app)
        client.get("/")
        assert recorded.last == ["TimingMiddleware", "endpoint", "TimingMiddleware"]
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"trace() takes a Starlette or FastAPI app, not {type(app).__name__}.")
    if app.middleware_stack is not None:
        raise RuntimeError(
            "trace() was called after the app built its middleware stack (on its first request); "
            "call it before the app serves a request."
        )
    recorded = Trace()
    build_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        registered = app.user_middleware
        # Starlette builds the stack from this list; swap in traced copies just for the build.
        app.user_middleware = [
            *(Middleware(_traced(cls, recorded), *args, **kwargs) for cls, args, kwargs in registered),
            Middleware(_Endpoint, trace=recorded),
        ]
        try:
            return build_stack()
        finally:
            app.user_middleware = registered

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    return recorded
