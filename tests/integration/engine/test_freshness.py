"""Automatic refresh by tier, promotion by traffic, and how fresh each answer says it is."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from typing import Any

import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE, Settings
from aggserver.web.app import create_app
from aggserver.web.keys import SCHEDULER, TIERS
from tests.support import Exchanges, cached_prices, checked, poll

Client = TestClient[Any, Any]
SYMBOLS = load_symbols(DEFAULT_SYMBOLS_FILE).ordered


def scheduled(settings: Settings, **changes: Any) -> Settings:
    fast = {"hot_interval_seconds": 0.5, "medium_interval_seconds": 1.0, "cold_interval_seconds": 2.0}
    return dataclasses.replace(settings, auto_refresh=True, **{**fast, **changes})


async def test_schedule_keeps_every_asset_cached(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    app = create_app(scheduled(settings))
    client = await aiohttp_client(app)
    await poll(lambda: _dbsize_is(redis_client, len(SYMBOLS)), timeout=60, interval=0.1)
    await poll(lambda: app[SCHEDULER].catch_up_seconds is not None, timeout=60)

    # Prices that vanish come back within a cold interval, without any request for them.
    gone = random.Random(5).sample(SYMBOLS[200:], 50)
    await redis_client.delete(*[f"price:{a}" for a in gone])
    await poll(lambda: _dbsize_is(redis_client, len(SYMBOLS)), timeout=20, interval=0.1)

    # Every tier's TTL outlives its interval, and answers carry their tier.
    for asset, tier in (("btcusdt", "hot"), (SYMBOLS[100], "medium"), (SYMBOLS[5000], "cold")):
        body = await checked(await client.get(f"/prices/{asset}"))
        assert body["refresh_tier"] == tier
        assert body["stale"] is False
        assert await redis_client.ttl(f"price:{asset}") > app[TIERS].by_name[tier].interval


async def _dbsize_is(client: redis.Redis, size: int) -> bool:
    """Whether Redis holds ``size`` prices."""
    return await cached_prices(client) == size


async def test_refresh_work_is_spread_not_bursty(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    # Bulk off: one request per asset, so the mock's counts show when each asset was fetched.
    app = create_app(
        scheduled(
            settings,
            exchange_bulk=False,
            hot_assets=0,
            medium_assets=0,
            cold_interval_seconds=4.0,
        )
    )
    await aiohttp_client(app)
    await poll(lambda: _dbsize_is(redis_client, len(SYMBOLS)), timeout=120, interval=0.2)
    await exchanges.reset()
    samples = []
    for _ in range(8):
        await asyncio.sleep(0.5)
        samples.append(await exchanges.total_served(0))
    per_half_second = [b - a for a, b in itertools.pairwise(samples)]
    # 10,000 assets over 4 s: ~1,250 per half second, never the whole tier at once.
    assert max(per_half_second) < len(SYMBOLS) / 2
    assert min(per_half_second) > 0


async def test_busy_cold_asset_is_promoted_to_hot(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    app = create_app(scheduled(settings, cold_interval_seconds=3600.0, promote_gets_per_second=1.0))
    client = await aiohttp_client(app)
    asset = SYMBOLS[9000]
    await poll(lambda: redis_client.exists(f"price:{asset}"), timeout=60)

    async def promoted() -> bool:
        await asyncio.gather(*(client.get(f"/prices/{asset}") for _ in range(10)))
        body = await (await client.get(f"/prices/{asset}")).json()
        return bool(body["refresh_tier"] == "hot")

    await poll(promoted, timeout=15, interval=0.1)
    # Now refreshed at the hot cadence, not once an hour.
    served = await exchanges.served(0, asset)
    await poll(lambda: exchanges.served_more_than(0, asset, served + 2), timeout=10)


async def test_answer_says_how_fresh_it_is(client: Client, exchanges: Exchanges) -> None:
    await client.post("/refresh/btcusdt")
    body = await checked(await client.get("/prices/btcusdt"))
    assert body["refresh_tier"] == "hot"
    assert body["sources"] == 3
    assert 0 <= body["age_seconds"] <= 5
    assert body["stale"] is False


async def test_age_comes_from_the_exchanges_not_from_our_fetch(client: Client, exchanges: Exchanges) -> None:
    quoted_at = int(time.time()) - 60
    for index in range(3):
        await exchanges.pin(index, {"btcusdt": {"price": 100.0, "volume": 1, "timestamp": quoted_at}})
    await client.post("/refresh/btcusdt")
    body = await checked(await client.get("/prices/btcusdt"))
    assert body["last_updated"] == quoted_at
    assert body["age_seconds"] >= 60
    assert body["stale"] is True  # a hot price a minute old is stale, even just fetched


async def test_max_age_refuses_an_old_price(client: Client, exchanges: Exchanges) -> None:
    quoted_at = int(time.time()) - 40
    for index in range(3):
        await exchanges.pin(index, {"ethusdt": {"price": 100.0, "volume": 1, "timestamp": quoted_at}})
    await client.post("/refresh/ethusdt")
    response = await client.get("/prices/ethusdt?max_age=10")
    assert response.status == 503
    body = await checked(response)
    assert body["age_seconds"] >= 40
    assert "max_age" in body["msg"]
    assert (await client.get("/prices/ethusdt?max_age=3600")).status == 200
    for bad in ("abc", "-1", "nan", "inf"):
        response = await client.get(f"/prices/ethusdt?max_age={bad}")
        assert response.status == 400
        assert "max_age" in (await checked(response))["msg"]
