"""The whole middleware stack under a real uvicorn, in the forms of `benchmarks.stacks`.

Each form runs in its own uvicorn (one worker, 127.0.0.1; h11 and asyncio unless told
otherwise) and wrk loads them in turn, round by round, with `GET /` from an allowed origin. It
prints requests per second and latency percentiles (medians over rounds), each form's ratio to
the bare app, and the project's targets: the package's middleware keeps at least 0.85 of the
bare app's requests per second and at least three times what the FastAPI-tutorial way keeps.
`--plot FILE.svg` draws the ratios.

    python benchmarks/end_to_end.py [--duration S] [--rounds R] [--check] [--plot FILE.svg]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections.abc import Sequence
from fractions import Fraction
from html import escape
from pathlib import Path

# Run as `python benchmarks/end_to_end.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.apps import ORIGIN
from benchmarks.stacks import STACKS, added_headers
from benchmarks.uvicorn_rps import Result, measure

BARE, TUTORIAL, DECORATOR, PACKAGE, EXPERT, HEADERS_ONLY = (variant.label for variant in STACKS)
# The package's stack must keep this much of the bare app's throughput...
MIN_OF_BARE = Fraction(85, 100)
# ...and this many times what the FastAPI-tutorial way keeps.
MIN_OVER_TUTORIAL = Fraction(3)


def medians(results: dict[str, list[Result]]) -> dict[str, Result]:
    return {
        label: Result(
            rps=statistics.median(r.rps for r in runs),
            p50=statistics.median(r.p50 for r in runs),
            p90=statistics.median(r.p90 for r in runs),
            p99=statistics.median(r.p99 for r in runs),
            errors=sum(r.errors for r in runs),
        )
        for label, runs in results.items()
    }


def report(results: dict[str, Result]) -> bool:
    """Print the tables; return whether both targets hold."""
    bare = results[BARE].rps
    print("| form | requests/s | / bare | p50 ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, result in results.items():
        print(
            f"| {label} | {result.rps:.0f} | {result.rps / bare:.2f} | {result.p50 * 1e3:.2f} "
            f"| {result.p90 * 1e3:.2f} | {result.p99 * 1e3:.2f} |"
        )
    of_bare = results[PACKAGE].rps / bare
    over_tutorial = results[PACKAGE].rps / results[TUTORIAL].rps
    checks = [
        ("package / bare requests/s", of_bare, MIN_OF_BARE),
        ("package / FastAPI-tutorial way requests/s", over_tutorial, MIN_OVER_TUTORIAL),
    ]
    print("\n| ratio | value | target | result |")
    print("|---|---:|---|---|")
    passed = True
    for name, value, target in checks:
        ok = value >= target
        passed = passed and ok
        print(f"| {name} | {value:.2f} | >= {float(target):.2f} | {'PASS' if ok else 'FAIL'} |")
    headers_only = results[HEADERS_ONLY].rps
    print(
        f"\nThe server writing the package's {len(added_headers())} response headers, with no middleware, keeps "
        f"{headers_only / bare:.2f} of the bare app's requests/s; the package's middleware keep "
        f"{results[PACKAGE].rps / headers_only:.2f} of that; the hand-written plain-ASGI stack keeps "
        f"{results[EXPERT].rps / headers_only:.2f}."
    )
    for label, result in results.items():
        if result.errors:
            print(f"\nwarning: {label}: {result.errors} socket errors or non-2xx responses during the runs")
            passed = False
    return passed


def plot(results: dict[str, Result], path: Path) -> None:
    """A horizontal bar per form: its requests/s as a share of the bare app's, with the 0.85 target."""
    bare = results[BARE].rps
    width, left, bar, gap, top = 760, 330, 26, 14, 40
    scale = (width - left - 70) / 1.0  # a share of 1.0 spans the plot
    height = top + len(results) * (bar + gap) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">Requests/s under uvicorn, as a share of the bare app'
        "</text>",
    ]
    for index, (label, result) in enumerate(results.items()):
        share = result.rps / bare
        y = top + index * (bar + gap)
        colour = "#2e7d32" if label == PACKAGE else "#1565c0" if label == DECORATOR else "#9e9e9e"
        parts += [
            f'<text x="{left - 8}" y="{y + bar * 0.68}" text-anchor="end">{escape(label.split(" (")[0])}</text>',
            f'<rect x="{left}" y="{y}" width="{share * scale:.1f}" height="{bar}" fill="{colour}"/>',
            f'<text x="{left + share * scale + 6:.1f}" y="{y + bar * 0.68}">{share:.2f} ({result.rps:.0f}/s)</text>',
        ]
    target_x = left + float(MIN_OF_BARE) * scale
    parts += [
        f'<line x1="{target_x:.1f}" y1="{top - 8}" x2="{target_x:.1f}" y2="{height - 22}" stroke="#c62828" '
        'stroke-dasharray="5,4"/>',
        f'<text x="{target_x:.1f}" y="{height - 8}" text-anchor="middle" fill="#c62828">target 0.85</text>',
        "</svg>",
    ]
    path.write_text("\n".join(parts) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default: 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default: 32)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per form; medians (default: 3)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    parser.add_argument("--plot", type=Path, help="write an SVG bar chart of the ratios to this file")
    parser.add_argument(
        "--http",
        default="h11",
        choices=["h11", "httptools"],
        help="uvicorn's HTTP protocol (default: h11, the one plain `pip install uvicorn` has)",
    )
    parser.add_argument(
        "--loop", default="asyncio", choices=["asyncio", "uvloop"], help="uvicorn's event loop (default: asyncio)"
    )
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.rounds) < 1:
        parser.error("--duration, --connections and --rounds must be at least 1")
    if shutil.which("wrk") is None:
        print("wrk is not installed. On Debian or Ubuntu: sudo apt-get install -y wrk", file=sys.stderr)
        return 2

    wrk = f"wrk -t1 -c{args.connections} -d{args.duration}s --latency -H 'Origin: {ORIGIN}'"
    print(
        f"uvicorn, 1 worker, {args.http}, {args.loop}, 127.0.0.1; {wrk}; {args.rounds} rounds, medians; "
        f"Python {sys.version.split()[0]}\n",
        flush=True,
    )
    results = medians(
        measure(
            STACKS,
            threads=1,
            connections=args.connections,
            duration=args.duration,
            rounds=args.rounds,
            headers=[f"Origin: {ORIGIN}"],
            server=["--http", args.http, "--loop", args.loop],
        )
    )
    passed = report(results)
    if args.plot is not None:
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
