"""The test suite and the in-process benchmark on each supported Python, each in a venv of its own.

    python3 -m nox                          # the tests on 3.11, 3.12 and 3.13
    python3 -m nox -s tests-3.13 -- -x      # one Python; what follows `--` goes to pytest
    python3 -m nox -s bench                 # benchmarks/overhead.py --check on each Python

nox finds each interpreter as `python3.X` on PATH (with pyenv: `PYENV_VERSION=3.11.7:3.12.1:3.13.0`).
The browser tests need Debian's Chromium, which the README's test command installs.
"""

from __future__ import annotations

import nox

# Keep in step with requires-python and the classifiers in pyproject.toml.
PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.sessions = ["tests"]
# A venv is made once and then reused; pip still brings its packages up to what pyproject.toml asks.
nox.options.reuse_venv = "yes"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, as the README's test command runs it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS)
def bench(session: nox.Session) -> None:
    """benchmarks/overhead.py --check: exits non-zero if a ratio misses its target on that Python."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/overhead.py", "--check", *session.posargs)
