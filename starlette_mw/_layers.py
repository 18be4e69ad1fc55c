"""What the package knows about a stack of layers: walking it, naming a layer, and the order rules.

Each of the package's middleware classes declares, in `order_role` and `order_rules`, what it is
and which layers must be outside it; `check_order` (run by `PlainMiddleware` as a layer is built,
when the layers inside it exist) is the one place that reads those declarations. A class never
imports another to find it in the stack: Starlette's own CORS middleware gets its role here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.routing import Router

__all__ = ["OrderRule", "check_order", "layer_name", "layers_from", "role_of"]

logger = logging.getLogger("starlette_mw")


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


class OrderRule(NamedTuple):
    """A layer with role `outside` belongs outside the class that declares the rule; `otherwise`
    says what goes wrong when it is inside, in the warning."""

    outside: str
    otherwise: str


# Roles of middleware that are not the package's: these declare nothing.
_ROLES: dict[type, str] = {StarletteCORSMiddleware: "cors"}


def role_of(layer: Any) -> str | None:
    """The role `layer` plays in the order rules: its class's `order_role`, or one given here."""
    role: str | None = getattr(type(layer), "order_role", None)
    if role is None:
        role = next((role for cls, role in _ROLES.items() if isinstance(layer, cls)), None)
    return role


def check_order(layer: Any) -> None:
    """Warn for each rule of `layer`'s class that a layer inside it breaks."""
    rules: tuple[OrderRule, ...] = getattr(type(layer), "order_rules", ())
    if not rules:
        return
    inside = [(role_of(inner), inner) for inner in layers_from(getattr(layer, "app", None))]
    for rule in rules:
        breaking = next((inner for role, inner in inside if role == rule.outside), None)
        if breaking is not None:
            name, other = type(layer).__name__, type(breaking).__name__
            logger.warning(
                "%s is outside %s in this app, so %s; put %s outside %s: register it after %s with "
                "add_middleware(), or before it in middleware=[...].",
                name, other, rule.otherwise, other, name, name,
            )  # fmt: skip
