"""``python -m bench.redis_writes``: what a batch of price writes costs the client, three ways.

On a private redis-server: 1,000 prices and 1,000 breakdowns (2,000 SETs with a TTL) plus the
announcement, written 20 times each way, interleaved: redis-py pipeline methods in MULTI/EXEC,
``execute_command`` in MULTI/EXEC, and the server's own write script (``PriceCache``'s). Prints
the client's CPU and the wall time per batch: the refresh path's cost per aggregate at push rates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

import redis.asyncio as redis

from aggserver.history.outbox import OutboxAppend, OutboxKeys
from aggserver.store.announcements import UPDATES_CHANNEL
from aggserver.store.prices import PriceCache
from devstack.services import start_redis

ASSETS = 1000
ROUNDS = 20


# (asset, value, ttl) triples, as PriceCache.put_many takes them.
Writes = list[tuple[str, bytes, int]]


def _batch() -> tuple[Writes, Writes]:
    """A batch's prices and their breakdowns."""
    body = b'{"asset":"a%d","price":123.456,"last_updated":1700000000,"sources":3,"updated_at":1700000000}'
    values = [(f"a{i}", body % i, 600) for i in range(ASSETS)]
    sources = [
        (f"a{i}", b'[{"exchange":"binance","price":1.0,"accepted":true}]' * 3, 600) for i in range(ASSETS)
    ]
    return values, sources


async def _pipelined(client: redis.Redis, values: Writes, sources: Writes) -> None:
    async with client.pipeline(transaction=True) as pipe:
        for asset, value, ttl in values:
            pipe.set(f"price:{asset}", value, ex=ttl)
        for asset, value, ttl in sources:
            pipe.set(f"sources:{asset}", value, ex=ttl)
        pipe.publish(UPDATES_CHANNEL, b"x")
        await pipe.execute()


async def _raw_commands(client: redis.Redis, values: Writes, sources: Writes) -> None:
    async with client.pipeline(transaction=True) as pipe:
        for asset, value, ttl in values:
            pipe.execute_command("SET", f"price:{asset}", value, "EX", ttl)
        for asset, value, ttl in sources:
            pipe.execute_command("SET", f"sources:{asset}", value, "EX", ttl)
        pipe.publish(UPDATES_CHANNEL, b"x")
        await pipe.execute()


async def _timed_rounds(
    ways: dict[str, Callable[[], Awaitable[object]]],
) -> dict[str, list[tuple[float, float]]]:
    """(client CPU, wall) seconds of each way's batches, the ways interleaved round by round."""
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for way in ways.values():
        await way()  # warm-up: connections, the script's first load
    for _ in range(ROUNDS):
        for name, way in ways.items():
            cpu, wall = time.process_time(), time.perf_counter()
            await way()
            figures[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return figures


def _report(figures: dict[str, list[tuple[float, float]]]) -> None:
    print(f"{ASSETS:,} prices + {ASSETS:,} breakdowns a batch, medians of {ROUNDS} batches:")
    for name, runs in figures.items():
        cpu = sorted(r[0] for r in runs)[len(runs) // 2] * 1000
        wall = sorted(r[1] for r in runs)[len(runs) // 2] * 1000
        print(f"  {name:<30} client CPU {cpu:6.2f} ms   wall {wall:6.2f} ms")


async def measure(url: str) -> None:
    client = redis.Redis.from_url(url)
    cache = PriceCache(client, timeout=5, outbox=OutboxAppend(OutboxKeys("bench")))
    values, sources = _batch()
    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "pipeline (MULTI/EXEC)": partial(_pipelined, client, values, sources),
        "execute_command (MULTI/EXEC)": partial(_raw_commands, client, values, sources),
        "write script (PriceCache)": partial(cache.put_many, values, sources=sources),
    }
    _report(await _timed_rounds(ways))
    await client.aclose()


def main() -> None:
    service = start_redis()
    try:
        asyncio.run(measure(service.url))
    finally:
        service.stop()


if __name__ == "__main__":
    main()
