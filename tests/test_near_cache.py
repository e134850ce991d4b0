"""The near-cache stays coherent with Redis across processes; Redis hiccups never hang a read."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from aggserver.aggregate import Aggregate
from aggserver.app import create_app
from aggserver.cache import CachedPrice, encode_price
from aggserver.keys import NEAR_CACHE
from aggserver.localstack import Service, free_port
from aggserver.nearcache import NearCache
from aggserver.reader import PriceReader
from aggserver.settings import Settings
from aggserver.tiers import Popularity, TierMap
from tests.support import Exchanges, answers, checked, poll, server_env


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def price(value: float) -> CachedPrice:
    raw = encode_price(
        Aggregate(asset="btcusdt", price=value, last_updated=1, sources=3), updated_at=1, tier="hot"
    )
    return CachedPrice.decode(raw)


def test_entries_expire_after_max_age_and_on_invalidation() -> None:
    clock = Clock()
    near = NearCache(max_age=2.0, clock=clock)
    near.connected = True
    near.put("btcusdt", price(1.0), generation=near.generation)
    assert near.get("btcusdt") == price(1.0)
    clock.now += 2.0
    assert near.get("btcusdt") is None
    near.put("btcusdt", price(2.0), generation=near.generation)
    near.invalidate(["btcusdt"])
    assert near.get("btcusdt") is None


def test_a_read_that_raced_an_update_is_not_cached() -> None:
    near = NearCache(max_age=60.0, clock=Clock())
    near.connected = True
    started = near.generation
    near.invalidate(["ethusdt"])  # an update arrives while the read is in flight
    near.put("btcusdt", price(1.0), generation=started)
    assert near.get("btcusdt") is None


def test_near_answers_follow_the_clock_and_the_price() -> None:
    # Bodies are rendered once per asset and second; a new second or a new price renders again.
    clock = Clock()
    near = NearCache(max_age=60.0, clock=clock)
    near.connected = True
    settings = Settings.from_env({})
    reader = PriceReader(
        cache=None,  # type: ignore[arg-type]  # a near-cache hit never reaches Redis
        refresher=None,  # type: ignore[arg-type]
        tiers=TierMap(["btcusdt"], settings),
        popularity=Popularity(promote_rate=1.0, max_promoted=1),
        latest_record=None,  # type: ignore[arg-type]
        near=near,
        clock=clock,
    )
    assert reader.answer_near("btcusdt") is None
    near.put("btcusdt", price(1.0), generation=near.generation)
    first = orjson.loads(reader.answer_near("btcusdt") or b"")
    assert (first["price"], first["age_seconds"]) == (1.0, 99)
    clock.now += 1.0
    later = orjson.loads(reader.answer_near("btcusdt") or b"")
    assert later["age_seconds"] == 100
    near.invalidate(["btcusdt"])
    assert reader.answer_near("btcusdt") is None
    near.put("btcusdt", price(2.0), generation=near.generation)
    assert orjson.loads(reader.answer_near("btcusdt") or b"")["price"] == 2.0


def test_nothing_is_cached_without_a_live_subscription() -> None:
    near = NearCache(max_age=60.0, clock=Clock())
    near.put("btcusdt", price(1.0), generation=near.generation)
    assert near.get("btcusdt") is None


@pytest.fixture
def other_process(settings: Settings, redis_service: Service) -> Iterator[str]:
    port = free_port()
    env = server_env(settings, redis_service.url, port, AUTO_REFRESH="false")
    process = subprocess.Popen([sys.executable, "-m", "aggserver", "serve"], env=env)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


async def test_update_by_another_process_is_seen_through_pubsub(
    settings: Settings,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    other_process: str,
) -> None:
    # A near-cache that would keep its copy for an hour: only the published update can evict it.
    app = create_app(dataclasses.replace(settings, near_cache_seconds=3600))
    client = await aiohttp_client(app)
    now = int(time.time())
    for index in range(3):
        await exchanges.pin(index, {"btcusdt": {"price": 100.0, "volume": 1, "timestamp": now}})
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{other_process}/health"), timeout=30)
        await poll(lambda: app[NEAR_CACHE].connected)
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert app[NEAR_CACHE].hits >= 1

        for index in range(3):
            await exchanges.pin(index, {"btcusdt": {"price": 200.0, "volume": 1, "timestamp": now}})
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200

    async def updated() -> bool:
        return bool((await (await client.get("/prices/btcusdt")).json())["price"] == 200.0)

    await poll(updated, timeout=10)


async def test_reads_survive_client_kill_and_client_pause(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    # No near-cache: every GET goes to Redis through the batcher.
    app = create_app(dataclasses.replace(settings, near_cache_seconds=0, redis_timeout_seconds=0.5))
    client = await aiohttp_client(app)
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert (await client.get("/prices/btcusdt")).status == 200

    await redis_client.client_kill_filter(_type="normal", skipme=True)
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.get("/prices/btcusdt") for _ in range(20))), 10
    )
    assert all(r.status == 200 for r in responses)

    # Redis stops answering: reads give up after the timeout and fall back to this process's
    # last price instead of hanging; once Redis answers again they read it again.
    await redis_client.client_pause(3000)
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.get("/prices/btcusdt") for _ in range(20))), 10
    )
    assert all(r.status == 200 for r in responses)
    await redis_client.client_unpause()
    await redis_client.delete("price:btcusdt")
    await redis_client.set(
        "price:btcusdt",
        encode_price(
            Aggregate(asset="btcusdt", price=42.0, last_updated=int(time.time()), sources=3),
            updated_at=1,
            tier="hot",
        ),
    )
    await poll(lambda: _price_is(client, 42.0), timeout=10)


async def _price_is(client: Any, value: float) -> bool:
    return bool((await (await client.get("/prices/btcusdt")).json())["price"] == value)
