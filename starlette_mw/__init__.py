"""Starlette middleware done properly: `@app.middleware("http")` back, and cheap."""

from starlette_mw.base import CallNext, DispatchFunction, HTTPMiddleware
from starlette_mw.decorator import App, MiddlewareMixin, middleware
from starlette_mw.describe import Stack, describe
from starlette_mw.paths import PathFilter

__all__ = [
    "App",
    "CallNext",
    "DispatchFunction",
    "HTTPMiddleware",
    "MiddlewareMixin",
    "PathFilter",
    "Stack",
    "describe",
    "middleware",
]
