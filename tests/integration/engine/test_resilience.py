"""Bad venues and lost backends, against real processes: the price stays trustworthy and served."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.exchanges.breaker import BreakerState, CircuitBreaker
from aggserver.settings import Settings
from aggserver.web.app import create_app
from aggserver.web.keys import EXCHANGES, PRICE_VIEW, REFRESHER
from devstack.services import Service, start_dynamo, start_redis
from tests.support import Exchanges, checked, poll

Client = TestClient[Any, Any]


async def pin_all(exchanges: Exchanges, asset: str, prices: list[float], *, age: int = 0) -> None:
    timestamp = int(time.time()) - age
    for index, price in enumerate(prices):
        await exchanges.pin(index, {asset: {"price": price, "volume": 1.0 + index, "timestamp": timestamp}})


async def priced_with_history(
    client: Client, exchanges: Exchanges, dynamo: DynamoDBClient, table: str, prices: dict[str, float]
) -> None:
    """Each asset priced by every exchange at its price, refreshed through ``client``, and its
    record in DynamoDB."""
    for asset, price in prices.items():
        await pin_all(exchanges, asset, [price] * 3)
        assert (await client.post(f"/refresh/{asset}")).status == 200
    for asset in prices:
        await poll(functools.partial(_count, dynamo, table, asset))


async def test_ten_x_outlier_does_not_move_the_price(client: Client, exchanges: Exchanges) -> None:
    await pin_all(exchanges, "ethusdt", [100.0, 101.0, 100.5])
    await exchanges.set_faults(2, mode="outlier", price_factor=10)
    assert (await client.post("/refresh/ethusdt")).status == 200
    body = await checked(await client.get("/prices/ethusdt"))
    two_venue_vwap = (100.0 * 1 + 101.0 * 2) / 3
    assert abs(body["price"] / two_venue_vwap - 1) < 0.005
    assert body["sources"] == 2


async def test_flapping_venue_is_readmitted_only_well_inside_the_threshold(
    client: Client, exchanges: Exchanges
) -> None:
    await pin_all(exchanges, "solusdt", [100.0, 100.0, 100.0])
    await exchanges.set_faults(2, mode="outlier", price_factor=10)
    await client.post("/refresh/solusdt")
    await exchanges.set_faults(2, mode="outlier", price_factor=1.04)  # inside 5%, outside 2.5%
    await client.post("/refresh/solusdt")
    assert (await checked(await client.get("/prices/solusdt")))["sources"] == 2
    await exchanges.set_faults(2, mode="ok")
    await client.post("/refresh/solusdt")
    assert (await checked(await client.get("/prices/solusdt")))["sources"] == 3


async def test_two_of_three_sources_succeeds_and_says_so(client: Client, exchanges: Exchanges) -> None:
    await exchanges.set_faults(1, mode="down")
    assert (await client.post("/refresh/adausdt")).status == 200
    assert (await checked(await client.get("/prices/adausdt")))["sources"] == 2


async def test_half_failing_exchange_never_breaks_a_refresh(client: Client, exchanges: Exchanges) -> None:
    await exchanges.set_faults(0, mode="ok", error_rate=0.5)
    for _ in range(10):
        assert (await client.post("/refresh/xrpusdt")).status == 200
        assert (await checked(await client.get("/prices/xrpusdt")))["sources"] in (2, 3)


async def test_a_slow_exchange_is_left_out_once_the_refresh_budget_is_spent(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    # The exchange would answer within its own timeout (5 s < 10 s), but not within the budget.
    budgeted = dataclasses.replace(settings, refresh_budget_seconds=0.5, exchange_timeout_seconds=10)
    client = await aiohttp_client(create_app(budgeted))
    await pin_all(exchanges, "adausdt", [0.5, 0.5, 0.5])
    await exchanges.set_faults(2, mode="slow", latency_ms=5000)
    refreshed = await asyncio.wait_for(client.post("/refresh/adausdt"), timeout=30)  # hang detector
    assert refreshed.status == 200
    body = await checked(await client.get("/prices/adausdt?detail=sources"))
    assert body["sources"] == 2
    slow = client.app[EXCHANGES].exchanges[2].name
    assert {q["exchange"]: q.get("reason") for q in body["quotes"]}[slow] == "timed out (refresh budget)"
    assert {q["exchange"]: q.get("reason_code") for q in body["quotes"]}[slow] == "timeout"


async def test_requests_in_flight_to_an_exchange_stay_within_exchange_concurrency(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    capped = dataclasses.replace(settings, exchange_concurrency=2)
    client = await aiohttp_client(create_app(capped))
    for index in range(3):
        # A request an earlier test gave up on may still be waiting out its latency there.
        await poll(functools.partial(exchanges.idle, index), timeout=30)
        await exchanges.set_faults(index, mode="slow", latency_ms=200)
        await exchanges.reset_stats(index)
    assets = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt", "adausdt", "dogeusdt", "trxusdt"]
    responses = await asyncio.gather(*(client.post(f"/refresh/{asset}") for asset in assets))
    assert [r.status for r in responses] == [200] * len(assets)
    # Eight refreshes at once, one request each to every exchange: two at a time reach each one.
    assert [await exchanges.most_in_flight(i) for i in range(3)] == [2, 2, 2]
    assert [await exchanges.total_served(i) for i in range(3)] == [len(assets)] * 3


async def test_refresh_storm_costs_one_request_per_exchange(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    # The exchanges hold their answers until all 50 callers have joined the one refresh.
    patient = dataclasses.replace(settings, exchange_timeout_seconds=120, refresh_budget_seconds=120)
    app = create_app(patient)
    client = await aiohttp_client(app)
    for index in range(3):
        await exchanges.set_faults(index, mode="held")
    storm = [asyncio.ensure_future(client.post("/refresh/btcusdt")) for _ in range(50)]
    await poll(lambda: app[REFRESHER].joined >= 49, timeout=60)
    for index in range(3):
        await exchanges.set_faults(index, mode="ok")
    responses = await asyncio.gather(*storm)
    assert [r.status for r in responses] == [200] * 50
    assert [await exchanges.served(i, "btcusdt") for i in range(3)] == [1, 1, 1]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_opens_on_a_dead_exchange_and_closes_when_it_returns(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    # The breaker's time is the test's: however slow the machine, it stays open until told.
    app = create_app(settings)
    client = await aiohttp_client(app)
    clock = ManualClock()
    exchange = app[EXCHANGES].exchanges[2]
    breaker = exchange.breaker = CircuitBreaker(
        exchange.name, failure_threshold=2, reset_seconds=30, clock=clock
    )
    await exchanges.set_faults(2, mode="down")
    for _ in range(6):
        assert (await client.post("/refresh/dotusdt")).status == 200
    assert _state(breaker) is BreakerState.OPEN
    assert await exchanges.served(2, "dotusdt") == 2  # after two failures it cost nothing
    await exchanges.set_faults(2, mode="ok")
    assert (await client.post("/refresh/dotusdt")).status == 200
    assert await exchanges.served(2, "dotusdt") == 2  # still open: the reset time has not passed
    clock.now += 30
    assert (await client.post("/refresh/dotusdt")).status == 200  # the probe
    assert _state(breaker) is BreakerState.CLOSED
    assert (await checked(await client.get("/prices/dotusdt")))["sources"] == 3


async def test_all_exchanges_down_keeps_serving_the_last_price_as_stale(
    client: Client, exchanges: Exchanges
) -> None:
    await pin_all(exchanges, "btcusdt", [100.0, 100.0, 100.0], age=30)
    await client.post("/refresh/btcusdt")
    for index in range(3):
        await exchanges.set_faults(index, mode="down")
    assert (await client.post("/refresh/btcusdt")).status == 502
    body = await checked(await client.get("/prices/btcusdt"))
    assert body["price"] == 100.0
    assert body["stale"] is True
    assert body["age_seconds"] >= 30


async def test_redis_miss_is_served_from_dynamodb_as_stale(
    client: Client,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    settings: Settings,
    dynamo: DynamoDBClient,
) -> None:
    await pin_all(exchanges, "linkusdt", [15.0, 15.0, 15.0])
    await client.post("/refresh/linkusdt")
    await poll(lambda: _count(dynamo, settings.prices_table, "linkusdt"))
    await redis_client.delete("price:linkusdt")
    # Expiry and eviction are not announced: this process's copy would serve for up to
    # NEAR_CACHE_SECONDS more; the miss below is the one after it aged out.
    client.app[PRICE_VIEW].invalidate(["linkusdt"])
    before = await exchanges.served(0, "linkusdt")
    body = await checked(await client.get("/prices/linkusdt"))
    assert body["price"] == 15.0
    assert body["stale"] is True
    # Put back into Redis, and a refresh goes out in the background.
    await poll(lambda: redis_client.exists("price:linkusdt"))
    await poll(lambda: exchanges.served_more_than(0, "linkusdt", before))


async def _count(dynamo: DynamoDBClient, table: str, asset: str) -> int:
    response = await dynamo.query(
        TableName=table, KeyConditionExpression="asset = :a", ExpressionAttributeValues={":a": {"S": asset}}
    )
    return int(response["Count"])


@pytest.fixture
def own_redis() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


async def test_start_up_with_every_exchange_down_restores_prices_from_history(
    client: Client,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    settings: Settings,
    dynamo: DynamoDBClient,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    prices = {"btcusdt": 60_000.0, "ethusdt": 3_000.0}
    await priced_with_history(client, exchanges, dynamo, settings.prices_table, prices)
    # Redis lost the prices, and no exchange answers when a server starts.
    await redis_client.delete(*(f"price:{asset}" for asset in [*prices, "solusdt"]))
    for index in range(3):
        await exchanges.set_faults(index, mode="down")
    symbols = tmp_path / "symbols.csv"
    symbols.write_text("symbol\n" + "\n".join([*prices, "solusdt"]) + "\n")
    starting = dataclasses.replace(settings, auto_refresh=True, symbols_file=symbols)
    restarted = await aiohttp_client(create_app(starting))

    async def restored_in_redis() -> bool:
        values = await redis_client.mget([f"price:{asset}" for asset in prices])
        return all(v is not None and orjson.loads(v).get("restored") is True for v in values)

    # The start-up round prices nothing; what it could not price comes back from history.
    await poll(restored_in_redis, timeout=30)
    for asset, price in prices.items():
        body = await checked(await restarted.get(f"/prices/{asset}"))
        assert (body["price"], body["restored"], body["stale"]) == (price, True, True)
    # Without any history there is nothing to answer with.
    assert (await restarted.get("/prices/solusdt")).status == 404


async def test_with_redis_down_a_price_never_seen_comes_from_history(
    settings: Settings, own_redis: Service, exchanges: Exchanges, dynamo: DynamoDBClient, aiohttp_client: Any
) -> None:
    on_own_redis = dataclasses.replace(
        settings, redis_url=own_redis.url, redis_timeout_seconds=0.5, history_flush_seconds=1
    )
    writer = await aiohttp_client(create_app(on_own_redis))
    prices = {"btcusdt": 60_000.0, "ethusdt": 3_000.0}
    await priced_with_history(writer, exchanges, dynamo, settings.prices_table, prices)
    # Another process, which reads ethusdt once and never btcusdt, then loses Redis; the
    # exchanges are down too, so the refresh a miss starts cannot price btcusdt either.
    reader = await aiohttp_client(create_app(on_own_redis))
    assert (await checked(await reader.get("/prices/ethusdt")))["price"] == prices["ethusdt"]
    own_redis.stop()
    for index in range(3):
        await exchanges.set_faults(index, mode="down")

    body = await checked(await reader.get("/prices/btcusdt"))
    assert (body["price"], body["restored"], body["stale"]) == (prices["btcusdt"], True, True)
    # A batch answers what this process remembers and names the rest missing.
    batch = await checked(await reader.get("/prices", params={"assets": "ethusdt,btcusdt"}))
    assert [p["asset"] for p in batch["prices"]] == ["ethusdt"]
    assert batch["missing"] == ["btcusdt"]


async def test_redis_stopped_and_restarted_while_serving(
    settings: Settings, own_redis: Service, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    # Redis is down again when the app stops: do not spend long trying to save the spill.
    app = create_app(
        dataclasses.replace(
            settings, redis_url=own_redis.url, redis_timeout_seconds=0.5, history_flush_seconds=1
        )
    )
    client = await aiohttp_client(app)
    assert (await client.post("/refresh/btcusdt")).status == 200
    port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
    own_redis.stop()

    # Redis is gone: reads come from this process's last price, refreshes keep going.
    for _ in range(5):
        response = await client.get("/prices/btcusdt")
        assert response.status == 200
        assert (await checked(response))["asset"] == "btcusdt"
    assert (await client.post("/refresh/ethusdt")).status == 200
    assert (await client.get("/prices/ethusdt")).status == 200
    assert (await client.get("/prices/solusdt")).status == 503  # nothing anywhere: say so

    restarted = start_redis(port)
    try:
        direct = redis.Redis.from_url(restarted.url)

        async def written_again() -> bool:
            await client.post("/refresh/ethusdt")
            return bool(await direct.exists("price:ethusdt"))

        await poll(written_again, timeout=15, interval=0.2)
        assert (await client.get("/prices/ethusdt")).status == 200
        await direct.aclose()
    finally:
        restarted.stop()


@pytest.fixture
async def own_dynamo(tmp_path: Path) -> AsyncIterator[Service]:
    service = start_dynamo(path=tmp_path / "dynalite", backend="dynalite")
    yield service
    service.stop()


async def test_a_hung_dynamodb_is_named_and_bounds_a_redis_miss(
    settings: Settings, own_dynamo: Service, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, dynamodb_endpoint=own_dynamo.url)))
    assert (await client.get("/ready")).status == 200
    os.kill(own_dynamo.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        ready = await asyncio.wait_for(client.get("/ready"), timeout=30)
        assert ready.status == 503
        assert (await ready.json())["dynamodb"] == "down"
        # A Redis miss waits for the latest record a bounded time (botocore alone would retry for
        # ~15 s; this is a hang detector, not a speed test), then says history is unavailable
        # rather than that the asset has no price.
        missed = await asyncio.wait_for(client.get("/prices/dotusdt"), timeout=30)
        assert missed.status == 503
        assert (await missed.json())["msg"] == "History store unavailable, try again"
    finally:
        os.kill(own_dynamo.process.pid, signal.SIGCONT)


async def test_dynamodb_outage_loses_no_history(
    settings: Settings,
    own_dynamo: Service,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    tmp_path: Path,
) -> None:
    app = create_app(dataclasses.replace(settings, dynamodb_endpoint=own_dynamo.url))
    client = await aiohttp_client(app)
    before = ["btcusdt", "ethusdt", "solusdt"]
    during = ["adausdt", "xrpusdt", "dogeusdt", "dotusdt", "linkusdt"]
    for asset in before:
        assert (await client.post(f"/refresh/{asset}")).status == 200
    port = int(own_dynamo.url.rsplit(":", 1)[1])
    own_dynamo.stop()
    for asset in during:  # refreshes and reads do not notice DynamoDB is gone
        assert (await client.post(f"/refresh/{asset}")).status == 200
        assert (await client.get(f"/prices/{asset}")).status == 200
    restarted = start_dynamo(port, path=tmp_path / "dynalite", backend="dynalite")
    try:
        async with get_session().create_client(
            "dynamodb", region_name=settings.aws_region, endpoint_url=restarted.url
        ) as dynamo:

            async def all_recorded() -> bool:
                counts = [await _count(dynamo, settings.prices_table, a) for a in before + during]
                return counts == [1] * len(counts)

            await poll(all_recorded, timeout=30, interval=0.2)
    finally:
        restarted.stop()


def _state(breaker: CircuitBreaker) -> BreakerState:
    # A call, so that mypy does not narrow the state across the calls that change it.
    return breaker.state
