"""The one place the package reads a private part of Starlette: the path its router matches routes against.

`starlette._utils.get_route_path` is what `Route.matches`, `Mount.matches` and the router's
slash redirect call; using it is what keeps `include=` / `exclude=` on the paths the routes see.
A Starlette without it gets `own_route_path`, which answers the same (tests/app/test_paths_router.py
holds both to the router).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Scope


def own_route_path(scope: Scope) -> str:
    """The request path without the `root_path` the app is mounted under ("" for the mount point itself)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        # No prefix, or a server that leaves root_path out of path: the routes see path as it is.
        return path
    if path == root_path:
        return ""
    # '/prefixed' is not under '/prefix'.
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


route_path: Callable[[Scope], str]
try:
    from starlette._utils import get_route_path as route_path
except ImportError:  # a Starlette that moved it (tests/app/test_paths_router.py runs the fallback too)
    route_path = own_route_path
