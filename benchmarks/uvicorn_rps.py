"""Requests per second and latency of each app under a real uvicorn, loaded by `wrk`.

Every app in `benchmarks.apps.VARIANTS` runs in its own uvicorn process (one worker, 127.0.0.1,
a free port); wrk loads them in turn, round by round, and the table shows medians over the rounds
and each app's ratio to the bare app. See README.md.

    python benchmarks/uvicorn_rps.py [--duration S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Run as `python benchmarks/uvicorn_rps.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.apps import VARIANTS, Variant

ROOT = Path(__file__).resolve().parent.parent

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_DURATION = re.compile(r"^\s*([\d.]+)(us|ms|s|m)\s*$")


@dataclass(frozen=True, kw_only=True)
class Result:
    """One wrk run: throughput, latency percentiles in seconds, and failed requests."""

    rps: float
    p50: float
    p90: float
    p99: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with status {process.returncode} before listening on port {port}.")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"uvicorn did not listen on 127.0.0.1:{port} within {timeout:.0f} s.")


@contextlib.contextmanager
def serve(variant: Variant, server: Sequence[str] = ()) -> Iterator[str]:
    """Run `variant` under uvicorn in a subprocess, with `server` options; yield its URL; stop it afterwards."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",  # a fresh app per server, built by the same code overhead.py calls
        variant.import_string,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        *server,
    ]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}{variant.path}"
        check_response(variant.label, url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_response(label: str, url: str) -> None:
    """Fail early if an app does not answer its path with 200 "hello": timing a broken app proves nothing."""
    with urllib.request.urlopen(url, timeout=10) as response:
        status, body = response.status, response.read()
    if status != 200 or body != b"hello":
        raise RuntimeError(f"App {label!r} answered GET {url} with status {status} and body {body!r}, not 200 'hello'.")


def seconds(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"Cannot read wrk's duration {text!r}.")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(url: str, *, threads: int, connections: int, duration: int, headers: Sequence[str] = ()) -> Result:
    header_options = [option for header in headers for option in ("-H", header)]
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", *header_options, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p90 = re.search(r"^\s+90%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rps is None or p50 is None or p90 is None or p99 is None:
        raise RuntimeError(f"Cannot read wrk's output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors += int(non_2xx[1]) if non_2xx else 0
    return Result(rps=float(rps[1]), p50=seconds(p50[1]), p90=seconds(p90[1]), p99=seconds(p99[1]), errors=errors)


def measure(
    variants: Sequence[Variant],
    *,
    threads: int,
    connections: int,
    duration: int,
    rounds: int,
    headers: Sequence[str] = (),
    server: Sequence[str] = (),
) -> dict[str, list[Result]]:
    """One wrk result per variant per round; the servers all start first and stay up throughout."""
    results: dict[str, list[Result]] = {variant.label: [] for variant in variants}
    with contextlib.ExitStack() as stack:
        urls = {variant.label: stack.enter_context(serve(variant, server)) for variant in variants}
        for url in urls.values():  # warm up: imports, first middleware-stack build, connections
            run_wrk(url, threads=threads, connections=connections, duration=1, headers=headers)
        labels = list(urls)
        for round_ in range(rounds):
            shift = round_ % len(labels)  # rotate the order, as overhead.py does
            for label in labels[shift:] + labels[:shift]:
                result = run_wrk(
                    urls[label], threads=threads, connections=connections, duration=duration, headers=headers
                )
                results[label].append(result)
                print(f"  round {round_ + 1}/{rounds}: {label} done", file=sys.stderr, flush=True)
    return results


def report(results: dict[str, list[Result]], baseline: str) -> None:
    rps = {label: statistics.median(r.rps for r in runs) for label, runs in results.items()}
    p50 = {label: statistics.median(r.p50 for r in runs) for label, runs in results.items()}
    p99 = {label: statistics.median(r.p99 for r in runs) for label, runs in results.items()}
    print("| app | requests/s | / bare | p50 ms | / bare | p99 ms | / bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in results:
        print(
            f"| {label} | {rps[label]:.0f} | {rps[label] / rps[baseline]:.2f} "
            f"| {p50[label] * 1e3:.2f} | {p50[label] / p50[baseline]:.2f} "
            f"| {p99[label] * 1e3:.2f} | {p99[label] / p99[baseline]:.2f} |"
        )
    errors = {label: sum(r.errors for r in runs) for label, runs in results.items()}
    for label, count in errors.items():
        if count:
            print(f"\nwarning: {label}: {count} socket errors or non-2xx responses during the runs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default: 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default: 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default: 1)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per app; the table shows medians (default: 3)")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.threads, args.rounds) < 1:
        parser.error("--duration, --connections, --threads and --rounds must be at least 1")
    if args.connections < args.threads:
        parser.error("wrk needs at least one connection per thread: raise --connections or lower --threads")

    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. On Debian or Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
            "(macOS: brew install wrk), then run this script again.",
            file=sys.stderr,
        )
        return 2

    print(
        f"uvicorn, 1 worker, 127.0.0.1; wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency; "
        f"{args.rounds} rounds, medians; Python {sys.version.split()[0]}\n",
        flush=True,
    )
    results = measure(
        VARIANTS,
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        rounds=args.rounds,
    )
    report(results, VARIANTS[0].label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
