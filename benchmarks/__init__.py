"""Benchmarks for starlette_mw; see README.md. Not part of the installed package."""
