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

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.price import encode_price
from aggserver.domain.symbols import load_symbols
from aggserver.domain.tiers import TierMap
from aggserver.settings import Settings
from aggserver.web.app import create_app
from aggserver.web.keys import PRICE_VIEW
from devstack.services import Service, free_port
from tests.support import Exchanges, answers, checked, poll, server_env

TIERS = TierMap(["btcusdt", "ethusdt"], Settings.from_env({}))


@pytest.fixture
def other_process(settings: Settings, redis_service: Service) -> Iterator[str]:
    port = free_port()
    env = server_env(settings, redis_service.url, port, AUTO_REFRESH="false")
    process = subprocess.Popen([sys.executable, "-m", "aggserver", "serve"], env=env)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


async def long_lived_reader(aiohttp_client: Any, settings: Settings, other_process: str) -> Any:
    """This process, with a near-cache that would keep a copy for an hour (only announcements
    can change it), once it and the other process are up."""
    client = await aiohttp_client(create_app(dataclasses.replace(settings, near_cache_seconds=3600)))
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{other_process}/health"), timeout=30)
    await poll(lambda: client.app[PRICE_VIEW].connected)
    return client


async def test_update_by_another_process_is_seen_through_pubsub(
    settings: Settings,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    other_process: str,
) -> None:
    client = await long_lived_reader(aiohttp_client, settings, other_process)
    app = client.app
    now = int(time.time())
    for index in range(3):
        await exchanges.pin(index, {"btcusdt": {"price": 100.0, "volume": 1, "timestamp": now}})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert app[PRICE_VIEW].hits >= 1

        for index in range(3):
            await exchanges.pin(index, {"btcusdt": {"price": 200.0, "volume": 1, "timestamp": now}})
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200

    async def updated() -> bool:
        return bool((await (await client.get("/prices/btcusdt")).json())["price"] == 200.0)

    await poll(updated, timeout=10)


async def test_two_processes_agree_with_redis_after_a_burst_of_updates(
    settings: Settings,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    other_process: str,
) -> None:
    # Another process refreshes twenty assets five times over while this one reads them through a
    # near-cache that would keep a copy for an hour. Announcements carry the values: once the
    # writes stop, every answer here equals Redis's value and comes from the near-cache.
    client = await long_lived_reader(aiohttp_client, settings, other_process)
    near = client.app[PRICE_VIEW]
    assets = list(load_symbols(settings.symbols_file).ordered[:20])
    now = int(time.time())
    async with aiohttp.ClientSession() as session:

        async def read_all() -> None:
            for response in await asyncio.gather(*(client.get(f"/prices/{a}") for a in assets)):
                assert response.status in (200, 404)

        for round_ in range(5):
            quotes = {a: {"price": 100.0 + round_, "volume": 1, "timestamp": now} for a in assets}
            for index in range(3):
                await exchanges.pin(index, quotes)
            refreshes = [session.post(f"{other_process}/refresh/{a}") for a in assets]
            results = await asyncio.gather(*refreshes, read_all())
            assert all(r.status == 200 for r in results[:-1])  # type: ignore[union-attr]

    async def stored() -> dict[str, float]:
        values = await redis_client.mget([f"price:{a}" for a in assets])
        return {a: orjson.loads(v or b"null")["price"] for a, v in zip(assets, values, strict=True)}

    async def served() -> dict[str, float]:
        responses = await asyncio.gather(*(client.get(f"/prices/{a}") for a in assets))
        return {a: (await checked(response))["price"] for a, response in zip(assets, responses, strict=True)}

    assert await stored() == dict.fromkeys(assets, 104.0)
    await poll(lambda: _all_equal(served(), dict.fromkeys(assets, 104.0)), timeout=10)
    misses = near.misses
    assert await served() == await stored()
    assert near.misses == misses  # every answer came from this process's copy


async def _all_equal(answer: Any, expected: dict[str, float]) -> bool:
    return bool(await answer == expected)


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
