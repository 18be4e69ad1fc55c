"""The whole stack under sustained concurrent load from a real client, against uvicorn in its own process.

Every response is checked, background tasks and streams are counted on the server, each failure
on purpose must reach uvicorn's log, and the server's memory must not grow once warm. The short
form runs with the test suite; `pytest -m slow` runs the 100,000-request soak.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from soak_app import CHUNKS, LEGACY, ORIGIN
from uvicorn_child import uvicorn_process

# Growth of the server's resident memory allowed between the warm-up and the end of the run: room
# for the allocator's arenas, far below what a leak of even 100 bytes per request would add.
MEMORY_GROWTH_KIB = 4096

# One cycle of 100 requests; the run repeats it.
CYCLE: tuple[str, ...] = (
    ("plain",) * 70 + ("stream",) * 12 + ("background",) * 8 + ("redirect",) * 5 + ("preflight",) * 4 + ("boom",)
)


@dataclass
class Tally:
    sent: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1


async def request(http: httpx.AsyncClient, index: int, tally: Tally) -> None:
    kind = CYCLE[index % len(CYCLE)]
    tally.count(kind)
    origin = {"Origin": ORIGIN}
    problem = None
    if kind == "plain":
        response = await http.get("/", headers=origin)
        if (response.status_code, response.text) != (200, "hello") or not response.headers.get(
            "server-timing", ""
        ).startswith("app;dur="):
            problem = f"{response.status_code} {response.text!r} {response.headers}"
        elif response.headers.get("access-control-allow-origin") != ORIGIN or response.headers.get("x-tagged") != "yes":
            problem = f"headers {response.headers}"
    elif kind == "stream":
        async with http.stream("GET", "/stream", headers=origin) as streamed:
            body = b"".join([chunk async for chunk in streamed.aiter_bytes()])
        expected = b"".join(f"chunk {i}\n".encode() for i in range(CHUNKS))
        if streamed.status_code != 200 or body != expected:
            problem = f"stream {streamed.status_code} {body!r}"
    elif kind == "background":
        response = await http.get("/background", headers=origin)
        if response.text != "later":
            problem = f"background {response.status_code} {response.text!r}"
    elif kind == "redirect":
        number = index % len(LEGACY)
        response = await http.get(f"/archive/{number}", headers=origin)
        if response.status_code != 301 or response.headers.get("location") != f"/posts/{number}":
            problem = f"redirect {response.status_code} {response.headers}"
    elif kind == "preflight":
        response = await http.options("/", headers={**origin, "Access-Control-Request-Method": "PUT"})
        if response.status_code != 200 or response.headers.get("access-control-allow-origin") != ORIGIN:
            problem = f"preflight {response.status_code} {response.headers}"
    else:
        # uvicorn closes the connection of a request whose app raised (after logging it): ask for
        # that, so the client does not reuse a connection the server is closing.
        response = await http.get("/boom", headers={**origin, "Connection": "close"})
        if response.status_code != 500 or response.headers.get("access-control-allow-origin") != ORIGIN:
            problem = f"boom {response.status_code} {response.headers}"
    if problem is not None:
        tally.failures.append(f"request {index} ({kind}): {problem}")


async def load(base_url: str, start: int, stop: int, concurrency: int, tally: Tally) -> None:
    indices = iter(range(start, stop))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def worker() -> None:
            for index in indices:  # the workers share one iterator: each index is sent once
                await request(http, index, tally)

        async with anyio.create_task_group() as tasks:
            for _ in range(concurrency):
                tasks.start_soon(worker)


def stats(base_url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(base_url + "/stats", timeout=30).json()
    return result


def soak(requests: int, concurrency: int = 32) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "uvicorn.log"
        with uvicorn_process("soak_app:make_app", log) as base_url:
            warm_up = requests // 10
            anyio.run(load, base_url, 0, warm_up, concurrency, tally)
            warm = stats(base_url)
            anyio.run(load, base_url, warm_up, requests, concurrency, tally)
            # Background tasks run after their response went out: give the last ones a moment.
            deadline = time.monotonic() + 10
            while (end := stats(base_url))["background"] < tally.sent["background"] and time.monotonic() < deadline:
                time.sleep(0.05)
        logged = log.read_text()

    assert tally.failures == [], f"{len(tally.failures)} wrong responses, first: {tally.failures[:5]}"
    assert sum(tally.sent.values()) == requests
    assert end["background"] == tally.sent["background"]
    assert end["streams_finished"] == tally.sent["stream"]
    # Each failure on purpose reached uvicorn's log, once.
    assert logged.count("RuntimeError: failing on purpose") == tally.sent["boom"], logged[-2000:]
    growth = end["rss_kib"] - warm["rss_kib"]
    assert growth < MEMORY_GROWTH_KIB, f"the server grew by {growth} KiB after warming up: {warm} -> {end}"


def test_soak_short() -> None:
    soak(2_000)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_100k() -> None:
    soak(100_000)
