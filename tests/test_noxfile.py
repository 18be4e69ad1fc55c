"""noxfile.py tests each Python that pyproject.toml's classifiers and requires-python name, and no other."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_python_classifiers_are_the_pythons_nox_tests() -> None:
    # Loaded from its path: noxfile.py sits at the repository's root, outside any package.
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: 3."
    versions = [
        c.removeprefix("Programming Language :: Python :: ") for c in project["classifiers"] if c.startswith(prefix)
    ]
    assert versions == noxfile.PYTHONS
    assert project["requires-python"] == f">={noxfile.PYTHONS[0]}"
