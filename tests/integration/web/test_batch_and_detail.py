"""GET /prices?assets=... (many prices, one round trip) and GET /prices/{asset}?detail=sources."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from aggserver.domain.symbols import load_symbols
from aggserver.settings import Settings
from aggserver.web.app import create_app
from tests.support import Exchanges, checked, command_calls

Client = TestClient[Any, Any]


async def test_batch_answers_found_missing_and_invalid_in_order(client: Client) -> None:
    for asset in ("btcusdt", "ethusdt"):
        assert (await client.post(f"/refresh/{asset}")).status == 200
    listed = "ETHUSDT, btcusdt,solusdt,no-such,ethusdt,zzzzzz"
    response = await client.get("/prices", params={"assets": listed})
    assert response.status == 200
    body = await checked(response)
    assert [price["asset"] for price in body["prices"]] == ["ethusdt", "btcusdt"]
    assert body["missing"] == ["solusdt"]
    assert body["invalid"] == ["no-such", "zzzzzz"]
    single = await checked(await client.get("/prices/btcusdt"))
    assert body["prices"][1]["price"] == single["price"]
    assert set(body["prices"][1]) == set(single)


async def test_batch_accepts_repeated_parameters(client: Client) -> None:
    await client.post("/refresh/btcusdt")
    body = await checked(await client.get("/prices?assets=btcusdt&assets=ethusdt"))
    assert [price["asset"] for price in body["prices"]] == ["btcusdt"]
    assert body["missing"] == ["ethusdt"]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("", "at least one symbol"),
        ("?assets=", "at least one symbol"),
        ("?assets=,,", "at least one symbol"),
        ("?other=btcusdt", "unknown query parameter 'other'"),
    ],
)
async def test_batch_without_assets_is_400(client: Client, query: str, fragment: str) -> None:
    response = await client.get(f"/prices{query}")
    assert response.status == 400
    assert fragment in (await checked(response))["msg"]


async def test_batch_limit_is_1000_assets(client: Client, settings: Settings) -> None:
    symbols = load_symbols(settings.symbols_file).ordered
    response = await client.get("/prices", params={"assets": ",".join(symbols[:1000])})
    assert response.status == 200
    body = await checked(response)
    assert len(body["prices"]) + len(body["missing"]) == 1000

    response = await client.get("/prices", params={"assets": ",".join(symbols[:1001])})
    assert response.status == 400
    assert "at most 1000" in (await checked(response))["msg"]


async def test_batch_is_one_redis_round_trip(
    settings: Settings, redis_client: redis.Redis, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    # No near-cache, so every asset is read from Redis: 500 assets must cost one MGET.
    client = await aiohttp_client(create_app(dataclasses.replace(settings, near_cache_seconds=0)))
    symbols = load_symbols(settings.symbols_file).ordered[:500]
    for asset in symbols[:3]:
        await client.post(f"/refresh/{asset}")
    before = await command_calls(redis_client, "mget")
    body = await checked(await client.get("/prices", params={"assets": ",".join(symbols)}))
    assert len(body["prices"]) == 3
    assert len(body["missing"]) == 497
    assert await command_calls(redis_client, "mget") == before + 1


async def test_detail_sources_shows_each_exchange_and_why_it_was_left_out(
    client: Client, exchanges: Exchanges
) -> None:
    now = int(time.time())
    await exchanges.pin(0, {"adausdt": {"price": 100.0, "volume": 2.0, "timestamp": now - 4}})
    await exchanges.pin(1, {"adausdt": {"price": 101.0, "volume": 2.0, "timestamp": now - 2}})
    await exchanges.pin(2, {"adausdt": {"price": 150.0, "volume": 2.0, "timestamp": now - 1}})
    assert (await client.post("/refresh/adausdt")).status == 200

    plain = await checked(await client.get("/prices/adausdt"))
    assert "quotes" not in plain
    assert plain["dispersion"] == pytest.approx(1.0 / 100.5)

    response = await client.get("/prices/adausdt?detail=sources")
    assert response.status == 200
    body = await checked(response)
    assert body["price"] == plain["price"]
    by_exchange = {quote["exchange"]: quote for quote in body["quotes"]}
    assert len(by_exchange) == 3
    accepted = sorted(q["price"] for q in body["quotes"] if q["accepted"])
    assert accepted == [100.0, 101.0]
    (outlier,) = [q for q in body["quotes"] if not q["accepted"]]
    assert outlier["price"] == 150.0
    assert outlier["reason"].startswith("outlier")
    assert outlier["reason_code"] == "outlier"
    assert all(q["age_seconds"] >= (now - q["timestamp"]) for q in body["quotes"])


async def test_detail_names_an_exchange_that_gave_no_quote(client: Client, exchanges: Exchanges) -> None:
    await exchanges.set_faults(1, mode="down")
    assert (await client.post("/refresh/btcusdt")).status == 200
    body = await checked(await client.get("/prices/btcusdt?detail=sources"))
    (failed,) = [q for q in body["quotes"] if not q["accepted"]]
    assert "HTTP 503" in failed["reason"]
    assert "price" not in failed


async def test_unknown_detail_is_400(client: Client) -> None:
    await client.post("/refresh/btcusdt")
    response = await client.get("/prices/btcusdt?detail=everything")
    assert response.status == 400
    assert "detail" in (await checked(response))["msg"]
