"""The benchmarks' apps answer as they should: a count of a broken app proves nothing.

The counts themselves need valgrind and minutes (`benchmarks/README.md`); this serves a few
requests through every app each in-process script counts, on the Python the tests run on.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import layers_instructions, overhead_instructions
from benchmarks.instructions import serve_in_process


@pytest.mark.parametrize("label", list(overhead_instructions.FACTORIES))
def test_overhead_instructions_serves_each_app(label: str) -> None:
    asyncio.run(serve_in_process(label, overhead_instructions.FACTORIES[label](), requests=3))  # checks its answer


@pytest.mark.parametrize("form", list(layers_instructions.FORMS))
def test_layers_instructions_serves_each_form(form: str) -> None:
    asyncio.run(serve_in_process(form, layers_instructions.FORMS[form](), requests=3))
