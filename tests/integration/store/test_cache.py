"""The Redis cache: one MGET per loop iteration, and clear failures when Redis is gone."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.price import encode_price, sequenced
from aggserver.errors import BackendUnavailable
from aggserver.history.outbox import OutboxAppend, OutboxKeys
from aggserver.settings import Settings
from aggserver.store.connection import create_redis
from aggserver.store.prices import PriceCache, price_key
from aggserver.web.app import create_app
from devstack.services import Service, start_redis
from tests.support import checked, command_calls


async def test_concurrent_reads_share_one_round_trip(
    redis_service: Service, redis_client: redis.Redis
) -> None:
    await redis_client.set(price_key("btcusdt"), b'{"asset":"btcusdt"}')
    cache = PriceCache(
        create_redis(redis_service.url, max_connections=8, timeout=1),
        timeout=1,
        outbox=OutboxAppend(OutboxKeys("prices")),
    )
    await cache.get("warmup")  # opens the connection outside the measured window
    mget_before = await command_calls(redis_client, "mget")
    get_before = await command_calls(redis_client, "get")

    assets = ["btcusdt", "ethusdt", "btcusdt"] * 100
    values = await asyncio.gather(*(cache.get(a) for a in assets))

    assert await command_calls(redis_client, "mget") - mget_before == 1
    assert await command_calls(redis_client, "get") - get_before == 0
    assert values[0] == b'{"asset":"btcusdt"}'
    assert values[1] is None
    assert values.count(None) == 100
    await cache.close()


async def test_concurrent_http_reads_are_batched(
    client: TestClient[Any, Any], redis_client: redis.Redis
) -> None:
    await client.post("/refresh/btcusdt")
    await client.get("/prices/btcusdt")
    before = await command_calls(redis_client, "mget")
    responses = await asyncio.gather(*(client.get("/prices/btcusdt") for _ in range(50)))
    assert all(r.status == 200 for r in responses)
    assert await command_calls(redis_client, "mget") - before < 50


async def test_put_many_sets_value_and_ttl(redis_service: Service, redis_client: redis.Redis) -> None:
    cache = PriceCache(
        create_redis(redis_service.url, max_connections=2, timeout=1),
        timeout=1,
        outbox=OutboxAppend(OutboxKeys("prices")),
    )
    stored = encode_price(
        Aggregate(asset="ethusdt", price=1.5, last_updated=7, sources=2), updated_at=9, tier="hot"
    )
    await redis_client.delete("seq:ethusdt", "price:ethusdt")
    assert await cache.put_many([("ethusdt", stored, 42)]) == [1]
    assert await redis_client.get("price:ethusdt") == sequenced(stored, 1)
    assert 40 <= await redis_client.ttl("price:ethusdt") <= 42
    # Every new price takes the next number; a restore (set only if missing) the current one.
    assert await cache.put_many([("ethusdt", stored, 42), ("btcusdt", stored, 42)]) == [2, 1]
    await redis_client.delete("price:ethusdt")
    assert await cache.put_many([("ethusdt", stored, 42)], only_if_missing=True) == [2]
    assert await redis_client.get("price:ethusdt") == sequenced(stored, 2)
    await cache.close()


async def test_redis_down_reads_fail_fast_as_backend_unavailable() -> None:
    redis_server = start_redis()
    cache = PriceCache(
        create_redis(redis_server.url, max_connections=2, timeout=0.5),
        timeout=0.5,
        outbox=OutboxAppend(OutboxKeys("prices")),
    )
    assert await cache.get("btcusdt") is None
    redis_server.stop()
    results = await asyncio.gather(*(cache.get("btcusdt") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, BackendUnavailable) for r in results)
    await cache.close()


async def test_get_with_redis_down_answers_503_json(settings: Settings, aiohttp_client: Any) -> None:
    redis_server = start_redis()
    app = create_app(
        Settings.from_env(
            {
                **_env(settings),
                "REDIS_URL": redis_server.url,
                "REDIS_TIMEOUT_SECONDS": "0.5",
                # Redis stays down: shutdown would keep trying to save the outbox's spill this long.
                "HISTORY_FLUSH_SECONDS": "1",
            }
        )
    )
    client = await aiohttp_client(app)
    redis_server.stop()
    response = await client.get("/prices/btcusdt")
    assert response.status == 503
    assert (await checked(response))["msg"]


def _env(settings: Settings) -> dict[str, str]:
    return {
        "EXCHANGE_URLS": ",".join(settings.exchange_urls),
        "AWS_ENDPOINT_URL_DYNAMODB": settings.dynamodb_endpoint or "",
        "PRICES_TABLE": settings.prices_table,
    }


async def test_list_reads_join_the_same_round_trip_as_single_reads(
    redis_service: Service, redis_client: redis.Redis
) -> None:
    await redis_client.set(price_key("a"), b"1")
    await redis_client.set(price_key("b"), b"2")
    cache = PriceCache(
        create_redis(redis_service.url, max_connections=8, timeout=1),
        timeout=1,
        outbox=OutboxAppend(OutboxKeys("prices")),
    )
    await cache.get("warmup")
    before = await command_calls(redis_client, "mget")
    single, listed, other = await asyncio.gather(
        cache.get("a"), cache.get_list(["b", "a", "zz", "b"]), cache.get_list(["a"])
    )
    assert (single, listed, other) == (b"1", [b"2", b"1", None, b"2"], [b"1"])
    assert await command_calls(redis_client, "mget") - before == 1
    await cache.close()


def test_encoded_prices_are_right_sized_in_memory() -> None:
    # The process keeps the last encoded price of every asset; orjson's own output sits in an
    # allocation of at least 4 KiB, which made 10,000 of them cost 39 MiB.
    aggregate = Aggregate(asset="btcusdt", price=43_000.5, last_updated=1_700_000_000, sources=3)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [encode_price(aggregate, updated_at=1_700_000_001, tier="hot") for _ in range(1_000)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(kept[0]) < 250
    assert grown < 1_000 * 1_024, f"{grown / 1_000:.0f} bytes per kept price"
