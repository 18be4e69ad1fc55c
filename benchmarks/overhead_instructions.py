"""`HTTPMiddleware`'s overhead against `BaseHTTPMiddleware`'s in instructions per request, counted by valgrind.

`overhead.py` times the layers in-process, which a busy machine blurs. This counts instead: each
app (bare, `BaseHTTPMiddleware`, `HTTPMiddleware` with the tutorial's dispatch function) answers
N in-process requests under `valgrind --tool=callgrind`; a run with N requests minus a run with
none, divided by N, is one request's cost, and a layer's overhead is that minus the bare app's.

    python benchmarks/overhead_instructions.py [--requests N]   # ~1 min per Python
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

# Run as `python benchmarks/overhead_instructions.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.apps import VARIANTS
from benchmarks.instructions import per_request, valgrind_missing
from benchmarks.overhead import HTTP_MIDDLEWARE_AIM, check_response, make_receive, make_scope, send

LABELS = ("bare", "BaseHTTPMiddleware", "HTTPMiddleware")
WARM_UP = 200


async def serve(label: str, requests: int) -> None:
    (variant,) = (variant for variant in VARIANTS if variant.label == label)
    app = variant.factory()
    await check_response(label, app)
    for _ in range(WARM_UP + requests):
        await app(make_scope(), make_receive(), send)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per app (default: 1000)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the process valgrind runs
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.requests))
        return 0
    if valgrind_missing():
        return 2
    cost = per_request(__file__, LABELS, args.requests)
    print(f"Python {sys.version.split()[0]}, asyncio, in-process; {args.requests} requests per app\n")
    print("| app | instructions / request | overhead over bare |")
    print("|---|---:|---:|")
    for label in LABELS:
        print(f"| {label} | {cost[label]:,.0f} | {cost[label] - cost['bare']:+,.0f} |")
    ratio = (cost["HTTPMiddleware"] - cost["bare"]) / (cost["BaseHTTPMiddleware"] - cost["bare"])
    met = "met" if ratio <= HTTP_MIDDLEWARE_AIM else "not met"
    print(f"\nHTTPMiddleware overhead / BaseHTTPMiddleware overhead: {ratio:.3f}; aim {HTTP_MIDDLEWARE_AIM}: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
