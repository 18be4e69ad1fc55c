"""Instructions per request of each form of `benchmarks.stacks`, counted by valgrind: no noise.

`end_to_end.py` measures requests per second under a real uvicorn and wrk, which is what users
get, but on a shared 2-core machine its ratios move by a tenth from run to run. This counts the
CPU instructions that each request costs instead, which stay the same from run to run: each form
runs behind uvicorn's own HTTP/1.1 protocol (h11, or httptools with `--http httptools`; asyncio),
fed the bytes of a `GET /` from an allowed origin over an in-memory transport, under
`valgrind --tool=callgrind`. A run with 1,000 requests minus a run with none, divided by 1,000,
is the cost of one request: parsing, the app, its middleware, and writing the response.
Instructions are not time (cache misses and the kernel's share are not counted), but for the same
interpreter they rank and scale alike.

    python benchmarks/instructions.py [--requests N] [--http httptools]   # Debian's valgrind; ~6 min
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Run as `python benchmarks/instructions.py`, the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.types import ASGIApp

from benchmarks.apps import ORIGIN
from benchmarks.overhead import check_response, make_receive, make_scope, send
from benchmarks.stacks import STACKS

REQUEST = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
WARM_UP = 200
# Issue 19's aims for the package's share of the same-headers reference, by uvicorn's protocol.
AIMS = {"h11": 0.95, "httptools": 0.90}


class Transport(asyncio.Transport):
    """The socket's side for uvicorn's protocol: keeps what it writes, and the addresses it asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.answered = asyncio.Event()  # the body ("hello") has been written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        if self.written[-1].endswith(b"hello"):
            self.answered.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def serve(import_string: str, requests: int, http: str) -> None:
    """Build the app as `uvicorn --factory` does and answer `WARM_UP + requests` requests."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    config = Config(import_string, factory=True, http=http, lifespan="off", access_log=False, log_level="warning")
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Tue, 24 Nov 2026 06:00:00 GMT"), (b"server", b"uvicorn")]
    # H11Protocol or HttpToolsProtocol, whose constructors the `asyncio.Protocol` type here does not know.
    protocol_class: Any = config.http_protocol_class
    protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    for _ in range(WARM_UP + requests):
        transport.written.clear()
        transport.answered.clear()
        protocol.data_received(REQUEST)
        await transport.answered.wait()
        await asyncio.sleep(0)  # the cycle's end, ready for the next request on the connection
    # The last request's task may still be ending (the tutorial's task groups): let it, before the loop closes.
    await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not asyncio.current_task()))
    if b" 200 OK" not in transport.written[0]:
        raise RuntimeError(f"{import_string} did not answer 200: {transport.written[0]!r}")


def callgrind_count(script: str, *arguments: str) -> int:
    """The instructions valgrind counts for the whole process `python script arguments...`."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, script, *arguments]
    # One hash seed for every run: string hashes decide where dictionaries and sets probe, which moves
    # the count by a few thousand instructions per request from run to run otherwise.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=environment).stderr
    match = re.search(r"refs:\s+([\d,]+)", output)
    if match is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{output}")
    return int(match[1].replace(",", ""))


def valgrind_missing() -> bool:
    """True, after saying how to install it, if valgrind is not on this machine."""
    if shutil.which("valgrind") is not None:
        return False
    print("valgrind is not installed. On Debian or Ubuntu: sudo apt-get install -y valgrind", file=sys.stderr)
    return True


def per_request(script: str, labels: Iterable[str], requests: int) -> dict[str, float]:
    """Instructions of one request of each app that `python script --serve LABEL --requests N` serves:
    a run with `requests` requests minus a run with none, divided by `requests`."""
    costs = {}
    for label in labels:
        counts = [callgrind_count(script, "--serve", label, "--requests", str(n)) for n in (requests, 0)]
        costs[label] = (counts[0] - counts[1]) / requests
    return costs


def count_in_process(
    script: str, description: str | None, apps: Mapping[str, Callable[[], ASGIApp]], argv: Sequence[str] | None
) -> tuple[dict[str, float], int]:
    """The command line of the in-process counts (`layers_instructions.py`, `overhead_instructions.py`).

    With `--serve LABEL` (the process valgrind runs), serves that app's requests and exits.
    Otherwise returns one request's instructions for each app of `apps`, and the number of requests
    counted; exits with 2 if valgrind is missing.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per app (default: 1000)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the process valgrind runs
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve_in_process(args.serve, apps[args.serve](), args.requests))
        sys.exit(0)
    if valgrind_missing():
        sys.exit(2)
    return per_request(script, apps, args.requests), args.requests


async def serve_in_process(label: str, app: ASGIApp, requests: int) -> None:
    """Check the app's answer, then call it directly for `WARM_UP + requests` requests."""
    await check_response(label, app)
    for _ in range(WARM_UP + requests):
        await app(make_scope(), make_receive(), send)


def count(import_string: str, requests: int, http: str) -> int:
    """The instructions valgrind counts for the whole process: start, warm-up, then `requests`."""
    return callgrind_count(__file__, "--serve", import_string, "--requests", str(requests), "--http", http)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per form (default: 1000)")
    parser.add_argument(
        "--http",
        choices=["h11", "httptools"],
        default="h11",
        help="uvicorn's HTTP protocol (default: h11, the one plain `pip install uvicorn` has)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the process valgrind runs
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.requests, args.http))
        return 0
    if valgrind_missing():
        return 2
    print(
        f"uvicorn's {args.http} protocol, asyncio, in-memory transport; {args.requests} requests per form\n", flush=True
    )
    print("| form | instructions / request | bare / form |")
    print("|---|---:|---:|")
    costs: dict[str, float] = {}
    for variant in STACKS:
        counts = [count(variant.import_string, requests, args.http) for requests in (args.requests, 0)]
        costs[variant.factory.__name__] = per_request = (counts[0] - counts[1]) / args.requests
        print(f"| {variant.label} | {per_request:,.0f} | {costs['bare'] / per_request:.3f} |", flush=True)
    kept, aim = costs["headers_only"] / costs["package"], AIMS[args.http]
    share = costs["package"] / costs["expert"]
    print(
        f"\nThe package's stack keeps {kept:.3f} of the same-headers reference (the endpoint sending its "
        f"headers with no middleware); aim {aim}: {'met' if kept >= aim else 'not met'}. The hand-written "
        f"plain-ASGI stack keeps {costs['headers_only'] / costs['expert']:.3f}. The package's stack costs "
        f"{share:.3f} of the hand-written stack's instructions, sending three headers more; aim below 1: "
        f"{'met' if share < 1 else 'not met'}."
    )
    # Issue 19's 3x under wrk, in instructions: no stack that sends these headers can cost less than
    # the endpoint sending them with no middleware, so that form's ratio bounds every stack's.
    tutorial = costs["tutorial"]
    print(
        f"\nThe FastAPI-tutorial way costs {tutorial / costs['package']:.2f} times the package's stack's "
        "instructions (aim under wrk: 3 times the requests per second); a stack sending the same headers "
        f"costs at least what the same-headers reference does, so at most {tutorial / costs['headers_only']:.2f} times."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
