"""The wheel and sdist, built as a user or a package index gets them: only what a user needs, with
complete metadata. Built from a copy of the checkout that holds the caches a test run leaves."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Top-level entries of the sdist: the package, its tests and what they import, the documentation's
# sources, and the project's files (hatchling adds .gitignore, so that a wheel built from the sdist
# leaves out the same files).
SDIST_TOP = {
    ".gitignore",
    "starlette_mw",
    "tests",
    "examples",
    "benchmarks",
    "docs",
    "docs_src",
    "mkdocs.yml",
    "CHANGELOG.md",
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "PKG-INFO",
}
CACHES = {"__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".nox", "site", ".venv"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` on a copy of the checkout with tool caches planted in it."""
    checkout = tmp_path_factory.mktemp("checkout") / "starlette_mw"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".git", *CACHES, "*.pyc"))
    for folder in (checkout, checkout / "tests", checkout / "starlette_mw"):
        for cache in CACHES:
            (folder / cache).mkdir(exist_ok=True)
            (folder / cache / "left-over").write_text("a tool's cache")
    (checkout / "starlette_mw" / "__pycache__" / "base.cpython-311.pyc").write_bytes(b"")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: hatchling comes from the test extra, so the build needs no network.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(checkout)],
        check=True,
        capture_output=True,
    )
    return out


def metadata(dist: Path) -> Message:
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [name] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_holds_the_package_and_its_licence(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    package = {name for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert package == {
        f"starlette_mw/{path.relative_to(ROOT / 'starlette_mw').as_posix()}"
        for path in (ROOT / "starlette_mw").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "starlette_mw/py.typed" in package
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert any(name.endswith(".dist-info/entry_points.txt") for name in names)  # the pytest plugin


def test_the_sdist_holds_only_what_a_user_needs(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert {name.split("/")[0] for name in names} == SDIST_TOP
    assert [name for name in names if CACHES & set(name.split("/")) or name.endswith(".pyc")] == []
    assert "docs_src/pytest_plugin/myapp.py" in names
    assert "tests/test_docs_src.py" in names


def test_the_metadata_is_complete(dist: Path) -> None:
    meta = metadata(dist)
    assert meta["Name"] == "starlette-mw"
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["License-File"] == "LICENSE"
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()  # the file matches the declared licence
    assert meta["Requires-Python"] == ">=3.11"
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Changelog"}
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = set(meta.get_all("Classifier", []))
    assert {"Framework :: FastAPI", "Framework :: AsyncIO", "Framework :: Pytest", "Typing :: Typed"} <= classifiers
    minimum = int(PYPROJECT["project"]["requires-python"].removeprefix(">=3."))
    tested = {f"Programming Language :: Python :: 3.{minor}" for minor in range(minimum, 14)}
    assert tested <= classifiers
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload() == (ROOT / "README.md").read_text()


def test_the_long_description_renders_on_a_package_index() -> None:
    # A package index shows the README on its own: a relative link, an in-page anchor or an
    # included file would not resolve there.
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'(?:src|href)="([^"]+)"', readme)
    assert [target for target in targets if not target.startswith("https://")] == []
    assert "--8<--" not in readme


def test_the_classifiers_are_known_to_package_indexes() -> None:
    from trove_classifiers import classifiers

    assert [name for name in PYPROJECT["project"]["classifiers"] if name not in classifiers] == []
