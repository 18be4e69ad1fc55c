"""What each layer of the package's stack costs a request, in instructions counted by valgrind.

`instructions.py` counts whole forms of the app under uvicorn. This takes the package's stack of
`stacks.package` (Timing, Redirect with 1,000 rules, the CORS preset, `App`) apart, in-process
(no server, as `overhead_instructions.py` does): a layer's cost is what the whole stack costs a
request minus what the stack without that layer costs, so it includes the work the layer causes
in the others (CORS exposing the timing headers, say). `App`'s error layer is `App` against a plain
`Starlette` app with no middleware.

    python benchmarks/layers_instructions.py [--requests N]   # Debian's valgrind; ~3 min
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware

# Run as `python benchmarks/layers_instructions.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import starlette_mw
from benchmarks.apps import ORIGIN
from benchmarks.instructions import count_in_process
from benchmarks.stacks import LEGACY, ROUTES, bare
from starlette_mw import App, Redirect, RedirectMiddleware, TimingMiddleware

LAYERS: dict[str, Callable[[], Middleware]] = {
    "CORSMiddleware": lambda: Middleware(starlette_mw.CORSMiddleware, preset="strict", allow_origins=[ORIGIN]),
    "RedirectMiddleware": lambda: Middleware(
        RedirectMiddleware, rules=[Redirect(old, new) for old, new in LEGACY.items()]
    ),
    "TimingMiddleware": lambda: Middleware(TimingMiddleware),
}


def stack_without(left_out: str | None) -> Callable[[], Starlette]:
    """The package's stack (outermost first, as in `stacks.package`) without the layer `left_out`."""

    def factory() -> Starlette:
        return App(routes=ROUTES, middleware=[make() for name, make in LAYERS.items() if name != left_out])

    return factory


FORMS: dict[str, Callable[[], Starlette]] = {
    "bare Starlette": bare,
    "App, no middleware": lambda: App(routes=ROUTES),
    "the package's stack": stack_without(None),
    **{f"without {name}": stack_without(name) for name in LAYERS},
}


def main(argv: Sequence[str] | None = None) -> int:
    cost, requests = count_in_process(__file__, __doc__, FORMS, argv)
    whole = cost["the package's stack"]
    print(f"Python {sys.version.split()[0]}, asyncio, in-process; {requests} requests per form\n")
    print("| layer | instructions / request |")
    print("|---|---:|")
    for name in LAYERS:
        print(f"| {name} | {whole - cost[f'without {name}']:,.0f} |")
    print(f"| App's error layer | {cost['App, no middleware'] - cost['bare Starlette']:,.0f} |")
    print(f"| the whole stack, over bare Starlette | {whole - cost['bare Starlette']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
