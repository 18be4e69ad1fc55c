"""What one middleware layer costs per request, measured in-process on asyncio with no server.

Each app in `benchmarks.apps.VARIANTS` is called directly as an ASGI app, many requests per round;
the apps take turns round by round (in a rotating order), and the table shows medians over the
rounds. The overhead of a variant is its time minus the bare app's time in the same round, so
slow patches of a shared machine mostly cancel out. See README.md.

    python benchmarks/overhead.py [--requests N] [--rounds R] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# Run as `python benchmarks/overhead.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.types import ASGIApp, Message, Receive, Scope

from benchmarks.apps import ORIGIN, VARIANTS, Variant


@dataclass(frozen=True, kw_only=True)
class RatioCheck:
    """A target on `numerator`'s overhead over the bare app, divided by `denominator`'s."""

    numerator: str
    denominator: str
    target: Fraction

    @property
    def name(self) -> str:
        return f"{self.numerator} overhead / {self.denominator} overhead"


# What HTTPMiddleware's overhead should come to, as a share of BaseHTTPMiddleware's, on this Python:
# an eighth where asyncio starts a task eagerly through a public API (3.12+), a sixth on 3.11.
HTTP_MIDDLEWARE_AIM = Fraction(1, 8) if sys.version_info >= (3, 12) else Fraction(1, 6)

CHECKS: tuple[RatioCheck, ...] = (
    # A sixth on every Python for now: the eighth aimed at on 3.12+ (HTTP_MIDDLEWARE_AIM) is not met yet,
    # so it is printed, not checked.
    RatioCheck(numerator="HTTPMiddleware", denominator="BaseHTTPMiddleware", target=Fraction(1, 6)),
    RatioCheck(numerator="TimingMiddleware", denominator="CORSMiddleware (Starlette)", target=Fraction(3, 2)),
    RatioCheck(
        numerator="CORSMiddleware (starlette_mw)", denominator="CORSMiddleware (Starlette)", target=Fraction(3, 2)
    ),
    RatioCheck(
        numerator="RedirectMiddleware, 10 rules", denominator="CORSMiddleware (Starlette)", target=Fraction(3, 2)
    ),
    RatioCheck(
        numerator="RedirectMiddleware, 10,000 rules", denominator="RedirectMiddleware, 10 rules", target=Fraction(3, 2)
    ),
)

_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"origin", ORIGIN.encode()),
)


def make_scope(path: str = "/") -> Scope:
    """A fresh scope as uvicorn builds one for `GET path` (Starlette writes into it, so never reuse one)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(_HEADERS),
    }


def make_receive() -> Receive:
    """The empty request body, then (like a live keep-alive client) nothing until cancelled."""
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.get_running_loop().create_future()  # only cancellation ends this wait
        raise AssertionError("unreachable")

    return receive


async def send(message: Message) -> None:
    pass


async def time_requests(app: ASGIApp, requests: int, path: str = "/") -> float:
    """Seconds per request, over `requests` sequential requests for `path`."""
    gc.collect()  # start each batch with the same heap, not with the last batch's garbage
    start = time.perf_counter()
    for _ in range(requests):
        await app(make_scope(path), make_receive(), send)
    return (time.perf_counter() - start) / requests


async def check_response(label: str, app: ASGIApp, path: str = "/") -> None:
    """Fail early if an app does not answer `GET path` with 200 "hello": timing a broken app proves nothing."""
    messages: list[Message] = []

    async def record(message: Message) -> None:
        messages.append(message)

    await app(make_scope(path), make_receive(), record)
    status = messages[0].get("status") if messages else None
    body = b"".join(message.get("body", b"") for message in messages[1:])
    if status != 200 or body != b"hello":
        raise RuntimeError(
            f"App {label!r} answered GET {path} with status {status} and body {body!r}, not 200 'hello'."
        )


async def measure(variants: Sequence[Variant], requests: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per request for each variant, one entry per round."""
    apps = {variant.label: variant.factory() for variant in variants}
    paths = {variant.label: variant.path for variant in variants}
    for label, app in apps.items():
        await check_response(label, app, paths[label])
        await time_requests(app, min(requests, 1000), paths[label])  # warm up
    results: dict[str, list[float]] = {label: [] for label in apps}
    labels = list(apps)
    for round_ in range(rounds):
        # Rotate the order so no app always runs first (or right after the same neighbour).
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(await time_requests(apps[label], requests, paths[label]))
    return results


def overheads(results: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Median over rounds of each variant's time minus the baseline's time in the same round."""
    base = results[baseline]
    return {
        label: statistics.median(t - b for t, b in zip(times, base, strict=True)) for label, times in results.items()
    }


def report(results: dict[str, list[float]], baseline: str, checks: Sequence[RatioCheck]) -> bool:
    """Print the tables; return whether every check passed."""
    extra = overheads(results, baseline)
    base = statistics.median(results[baseline])
    print("| app | µs / request | rounds min-max | overhead over bare |")
    print("|---|---:|---:|---:|")
    for label, times in results.items():
        median = statistics.median(times) * 1e6
        spread = f"{min(times) * 1e6:.1f}-{max(times) * 1e6:.1f}"
        if label == baseline:
            cost = "—"
        else:
            cost = f"{extra[label] * 1e6:+.1f} µs ({extra[label] / base:+.0%})"
        print(f"| {label} | {median:.1f} | {spread} | {cost} |")
    print()
    print("| ratio | value | target | result |")
    print("|---|---:|---|---|")
    passed = True
    for check in checks:
        numerator, denominator = extra[check.numerator], extra[check.denominator]
        target = f"<= {check.target} ({float(check.target):.3f})"
        if denominator <= 0:  # noise swamped the denominator's cost; no ratio to judge
            print(f"| {check.name} | n/a | {target} | FAIL (denominator overhead <= 0) |")
            passed = False
            continue
        ratio = numerator / denominator
        ok = ratio <= check.target
        passed = passed and ok
        print(f"| {check.name} | {ratio:.3f} | {target} | {'PASS' if ok else 'FAIL'} |")
    base_overhead = extra["BaseHTTPMiddleware"]
    if base_overhead > 0:
        ratio = extra["HTTPMiddleware"] / base_overhead
        met = "met" if ratio <= HTTP_MIDDLEWARE_AIM else "not met"
        print(
            f"\nPython {sys.version_info[0]}.{sys.version_info[1]}: HTTPMiddleware overhead / BaseHTTPMiddleware "
            f"overhead {ratio:.3f}; the aim on this Python is {HTTP_MIDDLEWARE_AIM} "
            f"({float(HTTP_MIDDLEWARE_AIM):.3f}): {met}."
        )
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000, help="requests per app per round (default: 10000)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the table shows medians (default: 9)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a ratio misses its target")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")

    labels = {variant.label for variant in VARIANTS}
    for check in CHECKS:
        if not {check.numerator, check.denominator} <= labels:
            parser.error(f"Ratio check {check.name!r} names an app that benchmarks.apps.VARIANTS does not define.")

    print(
        f"{args.requests} requests per app per round, {args.rounds} rounds, medians; "
        f"Python {sys.version.split()[0]}, asyncio\n"
    )
    results = asyncio.run(measure(VARIANTS, args.requests, args.rounds))
    passed = report(results, VARIANTS[0].label, CHECKS)
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
