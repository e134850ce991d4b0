"""Many SSE clients on one server: how long a new aggregate takes to reach every one of them.

Each client follows a probe asset (cold, so only our refreshes move it) and the hot assets (which
the scheduler refreshes every few seconds, as background traffic). A round POSTs /refresh/{probe}
and times, per client, the arrival of the probe's next event, from just before the POST: so the
figure includes the refresh itself (three exchange requests), its Redis write and publish, the
pub/sub hop, the MGET back and the fan-out.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import uvloop


@dataclass(frozen=True)
class StreamFigures:
    clients: int
    deliveries: int
    missed: int
    p50_ms: float
    p99_ms: float
    refresh_p50_ms: float
    server_rss_mb: float


async def _follow(
    session: aiohttp.ClientSession, url: str, probe: bytes, arrivals: list[float], ready: asyncio.Event
) -> None:
    async with session.get(url) as response:
        response.raise_for_status()
        ready.set()
        async for line in response.content:
            if line.startswith(b"data:") and probe in line:
                arrivals.append(time.monotonic())


ROUND_SPACING_SECONDS = 1.5


async def _measure(
    base: str, probe: str, hot: list[str], clients: int, rounds: int, rss: Callable[[], float]
) -> StreamFigures:
    url = f"{base}/stream?assets={','.join([probe, *hot])}"
    marker = f'"asset":"{probe}"'.encode()
    arrivals: list[list[float]] = [[] for _ in range(clients)]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        readies = [asyncio.Event() for _ in range(clients)]
        followers = [
            asyncio.create_task(_follow(session, url, marker, arrivals[i], readies[i]))
            for i in range(clients)
        ]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(ready.wait() for ready in readies))
            await asyncio.sleep(1)  # the opening events (current prices) arrive and are counted out
            server_rss = rss()
            latencies: list[float] = []
            refreshes: list[float] = []
            missed = 0
            for _ in range(rounds):
                seen = [len(a) for a in arrivals]
                started = time.monotonic()
                async with session.post(f"{base}/refresh/{probe}") as response:
                    response.raise_for_status()
                refreshes.append(time.monotonic() - started)
                deadline = started + 10
                while time.monotonic() < deadline and any(
                    len(a) == n for a, n in zip(arrivals, seen, strict=True)
                ):
                    await asyncio.sleep(0.005)
                for a, n in zip(arrivals, seen, strict=True):
                    if len(a) > n:
                        latencies.append(a[n] - started)
                    else:
                        missed += 1
                # Past the server's minimum interval between two refreshes of one asset
                # (REFRESH_MIN_INTERVAL_SECONDS, 1 s): inside it a POST answers the cached
                # price and no event follows, and the round would count 1,000 misses.
                await asyncio.sleep(max(0.5, started + ROUND_SPACING_SECONDS - time.monotonic()))
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return StreamFigures(
        clients=clients,
        deliveries=len(latencies),
        missed=missed,
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=quantiles[98] * 1000,
        refresh_p50_ms=statistics.median(refreshes) * 1000,
        server_rss_mb=server_rss,
    )


def measure_streams(
    base: str, probe: str, hot: list[str], *, clients: int, rounds: int, rss: Callable[[], float]
) -> StreamFigures:
    """Open ``clients`` streams on ``base`` and time ``rounds`` refreshes of ``probe`` to them;
    ``rss`` is sampled once every client is connected. The clients run on core 1 when there are
    two or more (the server is pinned to core 0)."""
    cores = os.sched_getaffinity(0)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    try:
        return uvloop.run(_measure(base, probe, hot, clients, rounds, rss))
    finally:
        os.sched_setaffinity(0, cores)
