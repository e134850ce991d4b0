"""The oracle answers (/prices/{asset}/at, /prices/at, /twap, /change) against records in a real
DynamoDB-compatible server; every answer is checked against openapi.yaml."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

from aggserver.app import create_app
from aggserver.rollups import backfill_asset
from aggserver.settings import Settings
from devstack.services import start_dynamo
from tests.support import Exchanges, checked
from tests.test_history_api import record, store

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
    for index in range(3):
        await exchanges.pin(index, {"btcusdt": {"price": 150.0, "volume": 1, "timestamp": now}})
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
    now = int(time.time())
    for path in (f"/prices/btcusdt/at?timestamp={now}", "/prices/btcusdt/twap?window=600"):
        response = await client.get(path)
        assert response.status == 503, path
        assert (await checked(response))["msg"] == "History store unavailable, try again"
    batch = await client.get(f"/prices/at?assets=btcusdt,ethusdt&timestamp={now}")
    assert batch.status == 503
