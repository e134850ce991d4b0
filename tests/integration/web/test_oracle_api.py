"""The oracle answers (/prices/{asset}/at, /prices/at, /twap, /change) against records in a real
DynamoDB-compatible server; every answer is checked against openapi.yaml."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from aggserver.history.backfill import backfill_asset
from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import free_port, start_dynamo
from tests.support import Exchanges, answers, checked, child_server, poll, record, server_env, store

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Client = TestClient[Any, Any]


async def test_the_record_in_force_is_the_latest_at_or_before_the_time(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    now = int(time.time())
    await store(dynamo, settings.prices_table, [record(now - 100, 10.0), record(now - 50, 20.0)])
    body = await checked(await client.get(f"/prices/btcusdt/at?timestamp={now - 60}"))
    assert body == {
        "asset": "btcusdt",
        "at": now - 60,
        "price": 10.0,
        "timestamp": now - 100,
        "updated_at": now - 99,
        "gap_seconds": 40,
    }
    exact = await checked(await client.get(f"/prices/BTCUSDT/at?timestamp={now - 50}"))
    assert (exact["price"], exact["gap_seconds"]) == (20.0, 0)
    for query in (f"timestamp={now - 200}", f"timestamp={now - 60}&max_gap=30"):
        missing = await client.get(f"/prices/btcusdt/at?{query}")
        assert missing.status == 404
        assert (await checked(missing))["reason_code"] == "no_record_in_range"


@pytest.mark.parametrize(
    "query",
    ["", "timestamp=soon", "timestamp=99999999999", "timestamp=1&max_gap=0", "timestamp=1&at=2"],
)
async def test_bad_at_queries_are_400(client: Client, query: str) -> None:
    response = await client.get(f"/prices/btcusdt/at?{query}")
    assert response.status == 400
    assert (await checked(response))["msg"]


async def test_many_assets_at_one_time_with_reasons_for_the_missing(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    now = int(time.time())
    await store(
        dynamo,
        settings.prices_table,
        [
            record(now - 100, 10.0),
            record(now - 90, 3.0, asset="solusdt"),
            record(now - 10, 4.0, asset="solusdt"),
        ],
    )
    body = await checked(
        await client.get(f"/prices/at?assets=btcusdt,SOLUSDT,ethusdt,nosuch&timestamp={now - 20}")
    )
    assert [(p["asset"], p["price"], p["gap_seconds"]) for p in body["prices"]] == [
        ("btcusdt", 10.0, 80),
        ("solusdt", 3.0, 70),
    ]
    assert [(m["asset"], m["reason_code"]) for m in body["missing"]] == [("ethusdt", "no_record_in_range")]
    assert body["invalid"] == ["nosuch"]
    too_many = await client.get(f"/prices/at?assets={','.join(['btcusdt'] * 101)}&timestamp={now}")
    assert too_many.status == 400


async def test_twap_weighs_each_record_by_how_long_it_held(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    now = int(time.time())
    # 100 from now-3000, 200 from now-1500: half the covered time each (a second or two more for
    # 200 as the request's own "now" moves on).
    await store(dynamo, settings.prices_table, [record(now - 3000, 100.0), record(now - 1500, 200.0)])
    body = await checked(await client.get("/prices/btcusdt/twap?window=3600"))
    assert body["twap"] == pytest.approx(150.0, rel=0.01)
    assert body["coverage"] == pytest.approx(3000 / 3600, abs=0.01)
    assert (body["points"], body["resolution"], body["window"]) == (2, "records", 3600)
    assert body["end"] - body["start"] == 3600
    thin = await client.get("/prices/btcusdt/twap?window=3600&min_coverage=0.9")
    assert thin.status == 422
    assert (await checked(thin))["reason_code"] == "thin_coverage"
    # Only the record in force at the start holds in a window after both: fully covered.
    short = await checked(await client.get("/prices/btcusdt/twap?window=600"))
    assert (short["twap"], short["coverage"], short["points"]) == (200.0, 1.0, 1)
    nothing = await client.get("/prices/ethusdt/twap?window=600")
    assert nothing.status == 404
    for query in ("window=59", "window=604801", "min_coverage=2", "windows=60"):
        assert (await client.get(f"/prices/btcusdt/twap?{query}")).status == 400


async def test_long_windows_average_candle_closes(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    now = int(time.time())
    hour = now - now % 3600
    records = [record(hour - 6 * 3600 + i * 60, 100.0) for i in range(3 * 60)]
    records += [record(hour - 3 * 3600 + i * 60, 300.0) for i in range(3 * 60)]
    await store(dynamo, settings.prices_table, records)
    await backfill_asset(dynamo, settings.prices_table, "btcusdt")
    body = await checked(await client.get("/prices/btcusdt/twap?window=21600"))
    assert body["resolution"] == "1m"
    # Three hours at 100, then 300 to the end of the window (its last close holds on).
    assert 100.0 < body["twap"] < 300.0
    assert body["points"] >= 300
    assert body["coverage"] > 0.95


async def test_change_compares_now_with_the_record_in_force_one_period_before(
    client: Client, dynamo: DynamoDBClient, settings: Settings, exchanges: Exchanges
) -> None:
    now = int(time.time())
    await exchanges.pin_prices("btcusdt", [150.0] * 3, timestamp=now)
    assert (await client.post("/refresh/btcusdt")).status == 200
    await store(dynamo, settings.prices_table, [record(now - 3600 - 100, 100.0)])
    body = await checked(await client.get("/prices/btcusdt/change?period=1h"))
    assert body["change"] == pytest.approx(0.5)
    assert (body["price"], body["timestamp"]) == (150.0, now)
    assert (body["previous_price"], body["previous_timestamp"]) == (100.0, now - 3700)
    # A day back there is no record within a day before it: no silent rescaling.
    day = await client.get("/prices/btcusdt/change?period=24h")
    assert day.status == 404
    assert (await checked(day))["reason_code"] == "no_record_in_range"
    assert (await client.get("/prices/btcusdt/change?period=2h")).status == 400
    assert (await client.get("/prices/ethusdt/change")).status == 404  # no price at all


async def test_oracle_answers_are_503_with_dynamodb_down(settings: Settings, aiohttp_client: Any) -> None:
    dynamo = start_dynamo()
    client = await aiohttp_client(create_app(dataclasses.replace(settings, dynamodb_endpoint=dynamo.url)))
    dynamo.stop()
    assert (await client.post("/refresh/btcusdt")).status == 200  # prices do not need DynamoDB
    now = int(time.time())
    for path in (
        f"/prices/btcusdt/at?timestamp={now}",
        "/prices/btcusdt/twap?window=600",
        "/prices/btcusdt/change?period=1h",
    ):
        response = await client.get(path)
        assert response.status == 503, path
        assert (await checked(response))["msg"] == "History store unavailable, try again"
    batch = await client.get(f"/prices/at?assets=btcusdt,ethusdt&timestamp={now}")
    assert batch.status == 503


async def test_ema_moves_half_way_in_one_half_life_and_survives_a_restart(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    now = int(time.time())
    fast = dataclasses.replace(settings, ema_half_life_seconds=10.0)
    first = await aiohttp_client(create_app(fast))
    await exchanges.pin_prices("ltcusdt", [100.0] * 3, timestamp=now - 10)
    assert (await first.post("/refresh/ltcusdt")).status == 200
    assert (await checked(await first.get("/prices/ltcusdt")))["ema_price"] == pytest.approx(100.0, rel=1e-9)
    await first.close()
    # A new process: the EMA goes on from the stored one instead of starting again at the price.
    second = await aiohttp_client(create_app(fast))
    await exchanges.pin_prices("ltcusdt", [200.0] * 3, timestamp=now)
    assert (await second.post("/refresh/ltcusdt")).status == 200
    body = await checked(await second.get("/prices/ltcusdt"))
    assert (body["price"], body["ema_price"]) == (200.0, pytest.approx(150.0, rel=1e-9))


async def test_seq_grows_by_one_per_aggregate_across_two_instances(
    settings: Settings, exchanges: Exchanges, client: Client, redis_client: Any
) -> None:
    port = free_port()
    other = f"http://127.0.0.1:{port}"
    env = server_env(settings, settings.redis_url, port, AUTO_REFRESH="false")
    seqs: list[int] = []
    with child_server(env):
        async with aiohttp.ClientSession() as session:
            await poll(lambda: answers(session, f"{other}/health"), timeout=30)
            for round_ in range(10):
                if round_ % 2:
                    assert (await client.post("/refresh/xrpusdt")).status == 200
                else:
                    async with session.post(f"{other}/refresh/xrpusdt") as response:
                        assert response.status == 200
                stored = orjson.loads(await redis_client.get("price:xrpusdt"))
                seqs.append(stored["seq"])
            async with session.get(f"{other}/prices/xrpusdt") as response:
                there = await response.json()
    assert seqs == list(range(seqs[0], seqs[0] + 10))
    here = await checked(await client.get("/prices/xrpusdt"))
    assert here["seq"] == there["seq"] == seqs[-1]
