"""Starlette middleware done properly: `@app.middleware("http")` back, and cheap."""

from starlette_mw.base import CallNext, DispatchFunction, HTTPMiddleware
from starlette_mw.cors import CORSMiddleware, CORSPolicy
from starlette_mw.decorator import App, MiddlewareMixin, middleware
from starlette_mw.describe import Stack, describe
from starlette_mw.errors import install
from starlette_mw.paths import PathFilter
from starlette_mw.redirects import Redirect, RedirectMiddleware, load_redirects
from starlette_mw.routers import add_middleware
from starlette_mw.timing import Timer, TimingAllowOrigin, TimingMiddleware, record_timing, timing

__all__ = [
    "App",
    "CORSMiddleware",
    "CORSPolicy",
    "CallNext",
    "DispatchFunction",
    "HTTPMiddleware",
    "MiddlewareMixin",
    "PathFilter",
    "Redirect",
    "RedirectMiddleware",
    "Stack",
    "Timer",
    "TimingAllowOrigin",
    "TimingMiddleware",
    "add_middleware",
    "describe",
    "install",
    "load_redirects",
    "middleware",
    "record_timing",
    "timing",
]
