"""pyproject.toml's classifiers, requires-python and noxfile.py's Pythons tell the same story."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from trove_classifiers import classifiers as known_classifiers

ROOT = Path(__file__).resolve().parent.parent


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        table: dict[str, object] = tomllib.load(file)["project"]
    return table


def test_every_classifier_exists() -> None:
    classifiers = project()["classifiers"]
    assert isinstance(classifiers, list)
    assert [c for c in classifiers if c not in known_classifiers] == []


def test_the_python_classifiers_are_the_pythons_nox_tests() -> None:
    # Loaded from its path: noxfile.py sits at the repository's root, outside any package.
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    classifiers = project()["classifiers"]
    assert isinstance(classifiers, list)
    prefix = "Programming Language :: Python :: 3."
    versions = [c.removeprefix("Programming Language :: Python :: ") for c in classifiers if c.startswith(prefix)]
    assert versions == noxfile.PYTHONS
    assert project()["requires-python"] == f">={noxfile.PYTHONS[0]}"
