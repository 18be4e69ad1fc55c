"""`python -m starlette_mw stack module:app` prints an app's middleware stack."""

from __future__ import annotations

import argparse
import importlib
import sys

from starlette_mw._app.stack import describe


def _load(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"error: {target!r} is not of the form 'module:attribute', as in 'myproject.main:app'.")
    sys.path.insert(0, "")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: could not import module {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: module {module_name!r} has no attribute {attribute!r}.") from None
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starlette_mw")
    commands = parser.add_subparsers(dest="command", required=True)
    stack = commands.add_parser("stack", help="print an app's middleware layers in the order a request meets them")
    stack.add_argument("app", help="the app to describe, as 'module:attribute'")
    args = parser.parse_args(argv)
    app = _load(args.app)
    try:
        print(describe(app))  # type: ignore[arg-type]
    except TypeError as exc:
        raise SystemExit(f"error: {exc}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
