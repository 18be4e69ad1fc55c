"""`@app.middleware("http")` for Starlette, as FastAPI has it, registered through `add_middleware`."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from starlette_mw._app.errors import with_error_headers
from starlette_mw._app.routers import Target, add_middleware, check_target
from starlette_mw._engine.exchange import DispatchFunction
from starlette_mw._engine.http_middleware import HTTPMiddleware
from starlette_mw._paths import PathFilter, PathPatterns
from starlette_mw._registration import check_dispatch, check_middleware

F = TypeVar("F", bound=DispatchFunction)


def middleware(
    app: Target,
    middleware_type: str,
    *,
    include: PathPatterns = None,
    exclude: PathPatterns = None,
) -> Callable[[F], F]:
    """Register the decorated `async def f(request, call_next)` as middleware of `app`.

    Works on any Starlette or FastAPI instance, and on a router, Mount or route (FastAPI's
    `APIRouter` and `APIRoute` too), where it runs for that object's requests only, inside the
    app's stack. Like `add_middleware`, the function registered last is the outermost.
    `include=` / `exclude=` limit it to some paths (inside a Mount, the path without the Mount's
    prefix, as its routes see it); other requests skip it at almost no cost.

        app = Starlette(routes=routes)

        @starlette_mw.middleware(app, "http", exclude="/health")
        async def add_process_time(request, call_next):
            start = time.perf_counter()
            response = await call_next(request)
            response.headers["X-Process-Time"] = str(time.perf_counter() - start)
            return response
    """
    check_target(app)
    if middleware_type != "http":
        raise ValueError(
            f'Middleware type {middleware_type!r} is not supported; use @app.middleware("http") '
            "(the only type Starlette and FastAPI define), or write a plain ASGI middleware for websockets."
        )
    PathFilter(include, exclude)  # fail here, at decoration time, on a bad pattern

    def decorator(func: F) -> F:
        check_dispatch(func)
        add_middleware(app, HTTPMiddleware, dispatch=func, include=include, exclude=exclude)
        return func

    return decorator


class MiddlewareMixin:
    """Gives a Starlette subclass FastAPI's `app.middleware("http")` decorator.

    It also puts the package's middleware headers on the 500 that Starlette renders when an
    endpoint raises, and checks the options of the package's middleware where they are given
    (`App(middleware=[...])`, `add_middleware`), as `starlette_mw.install(app)` does for other apps.

        class App(MiddlewareMixin, Starlette): ...

        app = App(routes=routes)

        @app.middleware("http")
        async def add_server_header(request, call_next):
            response = await call_next(request)
            response.headers["X-Server"] = "starlette"
            return response
    """

    if not TYPE_CHECKING:  # type checkers see the app's own __init__, with its parameters typed

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Starlette keeps middleware=[...] as user_middleware; a bad option raises here, not on the first
            # request. (Mixed into a class that is not a Starlette app, there is none: middleware() says so.)
            check_middleware(getattr(self, "user_middleware", ()))

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        check_middleware([Middleware(middleware_class, *args, **kwargs)])
        super().add_middleware(middleware_class, *args, **kwargs)  # type: ignore[misc]

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
        # The app's own stack (Starlette's or FastAPI's), with the error layer `install()` puts in.
        build_stack: Callable[[], ASGIApp] = super().build_middleware_stack  # type: ignore[misc]
        return with_error_headers(build_stack())


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


_installed: weakref.WeakSet[Starlette] = weakref.WeakSet()


def install(app: Starlette) -> Starlette:
    """Let the package's middleware put their headers on the 500 that Starlette renders.

    For any Starlette or FastAPI app; `starlette_mw.App` needs no call. Call it before the app
    serves its first request, in any order with `add_middleware`. Returns the app.

    It also checks the options of the package's middleware where they are given: those the app
    has so far (from `middleware=[...]` too) at this call, later ones at `app.add_middleware`. On
    an app without it, Starlette has no hook to check them until it builds the stack, on the first
    request or lifespan event.

        app = FastAPI()
        starlette_mw.install(app)
        app.add_middleware(TimingMiddleware)
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"install() takes a Starlette or FastAPI app, not {type(app).__name__}.")
    if app in _installed or isinstance(app, MiddlewareMixin):
        return app
    if app.middleware_stack is not None:
        raise RuntimeError(
            "install() was called after the app built its middleware stack (on its first request); "
            "call it right after creating the app."
        )
    check_middleware(app.user_middleware)
    build = app.build_middleware_stack
    add = app.add_middleware

    def build_middleware_stack() -> ASGIApp:
        return with_error_headers(build())

    def add_middleware(middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        check_middleware([Middleware(middleware_class, *args, **kwargs)])
        add(middleware_class, *args, **kwargs)

    # Starlette builds the stack through this method, on the first request; wrap this app's only.
    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    app.add_middleware = add_middleware  # type: ignore[method-assign]
    _installed.add(app)
    return app
