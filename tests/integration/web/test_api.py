"""The HTTP API against real Redis, a real DynamoDB-compatible server and the mock exchanges."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from aggserver.web.keys import REFRESHER
from tests.support import Exchanges, checked

Client = TestClient[Any, Any]


async def test_refresh_then_get_returns_a_live_price(client: Client) -> None:
    response = await client.post("/refresh/btcusdt")
    assert response.status == 200
    assert await checked(response) == {"message": "Price for btcusdt refreshed", "refreshed": True}

    response = await client.get("/prices/btcusdt")
    assert response.status == 200
    body = await checked(response)
    assert body["asset"] == "btcusdt"
    assert 40_000 < body["price"] < 200_000  # mockex keeps btc near its real magnitude
    assert body["sources"] == 3
    assert body["last_updated"] > 1_600_000_000
    assert "last_updated_ms" not in body  # mockex quotes whole seconds


async def test_symbols_are_case_insensitive(client: Client) -> None:
    assert (await client.post("/refresh/ETHUSDT")).status == 200
    upper = await checked(await client.get("/prices/ETHUSDT"))
    lower = await checked(await client.get("/prices/ethusdt"))
    # The two answers may straddle a second: the age is of its moment, the price the same.
    for body in (upper, lower):
        del body["age_seconds"]
    assert upper == lower
    assert upper["asset"] == "ethusdt"


async def test_get_before_any_refresh_is_404(client: Client) -> None:
    response = await client.get("/prices/solusdt")
    assert response.status == 404
    assert await checked(response) == {"msg": "Asset not found"}


@pytest.mark.parametrize("asset", ["notasymbol", "btc-usdt", "x" * 100, "%F0%9F%92%B0"])
async def test_get_unknown_or_malformed_symbol_is_400(client: Client, asset: str) -> None:
    response = await client.get(f"/prices/{asset}")
    assert response.status == 400
    assert await checked(response) == {"msg": "Invalid asset symbol"}


@pytest.mark.parametrize("asset", ["btc-usdt", "b", "x" * 100, "btc%20usdt"])
async def test_refresh_malformed_symbol_is_400(client: Client, asset: str) -> None:
    response = await client.post(f"/refresh/{asset}")
    assert response.status == 400
    assert await checked(response) == {"msg": "Invalid asset symbol"}


async def test_refresh_unknown_symbol_is_404_and_calls_no_exchange(
    client: Client, exchanges: Exchanges
) -> None:
    response = await client.post("/refresh/notlisted")
    assert response.status == 404
    assert await checked(response) == {"msg": "Asset not found"}
    assert await exchanges.served(0, "notlisted") == 0


async def test_unknown_path_and_wrong_method_answer_json(client: Client) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await checked(response))["msg"] == "Not Found"

    response = await client.delete("/prices/btcusdt")
    assert response.status == 405
    body = await checked(response)
    assert "GET" in body["allowed"]
    assert "GET" in response.headers["Allow"]

    response = await client.get("/refresh/btcusdt")
    assert response.status == 405
    assert (await checked(response))["allowed"] == ["POST"]


async def test_price_is_the_volume_weighted_average(client: Client, exchanges: Exchanges) -> None:
    now = int(time.time())
    quotes = [(100.0, 2.0, now - 3), (102.0, 3.0, now - 1), (104.0, 5.0, now - 2)]
    for index, (price, volume, timestamp) in enumerate(quotes):
        await exchanges.pin(index, {"adausdt": {"price": price, "volume": volume, "timestamp": timestamp}})
    assert (await client.post("/refresh/adausdt")).status == 200
    body = await checked(await client.get("/prices/adausdt"))
    assert body["price"] == pytest.approx((100 * 2 + 102 * 3 + 104 * 5) / 10, rel=1e-12)
    assert body["last_updated"] == now - 1
    assert body["sources"] == 3


async def test_sub_cent_price_keeps_ten_significant_digits(client: Client, exchanges: Exchanges) -> None:
    price = 0.000012345678912345
    for index in range(3):
        await exchanges.pin(index, {"shibusdt": {"price": price, "volume": 1000.0 + index}})
    await client.post("/refresh/shibusdt")
    body = await checked(await client.get("/prices/shibusdt"))
    assert body["price"] == pytest.approx(price, rel=1e-10)
    assert f"{body['price']:.10g}" == f"{price:.10g}"


async def test_cached_price_has_the_ttl(client: Client, redis_client: redis.Redis) -> None:
    await client.post("/refresh/xrpusdt")
    ttl = await redis_client.ttl("price:xrpusdt")
    assert 290 <= ttl <= 300


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"mode": "down"}, "HTTP 503"),
        ({"mode": "ok", "error_rate": 1.0}, "HTTP 500"),
        ({"mode": "slow", "latency_ms": 3000}, "timed out"),
        ({"mode": "garbage", "garbage_kind": "not_json"}, "not JSON"),
        ({"mode": "garbage", "garbage_kind": "not_object"}, "not a JSON object"),
        ({"mode": "garbage", "garbage_kind": "wrong_symbol"}, "another symbol"),
        ({"mode": "garbage", "garbage_kind": "string_price"}, "price is not a number"),
        ({"mode": "garbage", "garbage_kind": "nan_price"}, "not JSON"),
        ({"mode": "garbage", "garbage_kind": "negative_price"}, "price is not positive"),
        ({"mode": "garbage", "garbage_kind": "zero_price"}, "price is not positive"),
        ({"mode": "garbage", "garbage_kind": "negative_volume"}, "volume is negative"),
        ({"mode": "garbage", "garbage_kind": "missing_fields"}, "price is not a number"),
        ({"mode": "garbage", "garbage_kind": "infinity_price"}, "not JSON"),
        ({"mode": "garbage", "garbage_kind": "string_volume"}, "volume is not a number"),
        ({"mode": "garbage", "garbage_kind": "huge_body"}, "body larger than"),
        ({"mode": "garbage", "garbage_kind": "slow_drip"}, "timed out"),
        ({"mode": "garbage", "garbage_kind": "wrong_content_type"}, "content type text/html is not JSON"),
    ],
)
async def test_each_invalid_quote_kind_is_left_out(
    client: Client, exchanges: Exchanges, faults: dict[str, Any], reason: str
) -> None:
    for index, price in enumerate((100.0, 101.0, 1_000_000.0)):
        await exchanges.pin(index, {"dotusdt": {"price": price, "volume": 1.0}})
    await exchanges.set_faults(2, **faults)
    assert (await client.post("/refresh/dotusdt")).status == 200
    body = await checked(await client.get("/prices/dotusdt"))
    assert body["sources"] == 2
    assert body["price"] == pytest.approx(100.5)  # the bad exchange's 1,000,000 is not in it

    # With only the faulty exchange left, the reason surfaces in the 502.
    await exchanges.set_faults(0, mode="down")
    await exchanges.set_faults(1, mode="down")
    response = await client.post("/refresh/dotusdt")
    assert response.status == 502
    reasons = (await checked(response))["reasons"]
    assert reason in " ".join(reasons.values())


async def test_all_exchanges_failing_is_502_and_keeps_the_cached_price(
    client: Client, exchanges: Exchanges
) -> None:
    await client.post("/refresh/linkusdt")
    before = await checked(await client.get("/prices/linkusdt"))
    for index in range(3):
        await exchanges.set_faults(index, mode="garbage", garbage_kind="negative_price")
    response = await client.post("/refresh/linkusdt")
    assert response.status == 502
    body = await checked(response)
    assert body["msg"] == "No valid quote from any exchange"
    assert len(body["reasons"]) == 3
    after = await checked(await client.get("/prices/linkusdt"))
    # The same price; its age may have ticked over a second between the two reads.
    assert {k: v for k, v in after.items() if k != "age_seconds"} == {
        k: v for k, v in before.items() if k != "age_seconds"
    }


async def test_all_exchanges_failing_before_any_price_leaves_cache_empty(
    client: Client, exchanges: Exchanges, redis_client: redis.Redis
) -> None:
    for index in range(3):
        await exchanges.set_faults(index, mode="down")
    assert (await client.post("/refresh/ltcusdt")).status == 502
    assert await redis_client.exists("price:ltcusdt") == 0
    assert (await client.get("/prices/ltcusdt")).status == 404


async def test_refresh_uses_each_exchange_once(client: Client, exchanges: Exchanges) -> None:
    await client.post("/refresh/avaxusdt")
    assert [await exchanges.served(i, "avaxusdt") for i in range(3)] == [1, 1, 1]


@pytest.mark.parametrize(
    "kind", ["huge_body", "slow_drip", "wrong_content_type", "not_json", "infinity_price"]
)
async def test_hostile_bulk_answers_never_reach_the_cache(
    client: Client, exchanges: Exchanges, redis_client: redis.Redis, kind: str
) -> None:
    # The scheduler's path: one bulk request per exchange for many assets.
    assets = ["btcusdt", "ethusdt", "solusdt"]
    for index in range(3):
        await exchanges.pin(index, {a: {"price": 100.0 + index, "volume": 1.0} for a in assets})
    await exchanges.set_faults(2, mode="garbage", garbage_kind=kind)
    refreshed, failed = await client.app[REFRESHER].refresh_many(assets)
    assert (refreshed, failed) == (3, 0)
    for asset in assets:
        body = await checked(await client.get(f"/prices/{asset}?detail=sources"))
        assert body["sources"] == 2
        assert body["price"] == pytest.approx(100.5)
        (bad,) = [q for q in body["quotes"] if not q["accepted"]]
        assert bad["reason"]
