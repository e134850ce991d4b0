"""GET /prices/{asset}/history and /candles against records in a real DynamoDB-compatible server,
and the pure candle and cursor logic."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import strategies as st

from aggserver.history.backfill import backfill_asset
from aggserver.settings import Settings
from aggserver.web.app import create_app
from aggserver.web.keys import HISTORY_QUERIES
from aggserver.web.params import encode_cursor
from devstack.services import free_port, start_dynamo
from tests.support import checked, poll, record, store

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Client = TestClient[Any, Any]
BASE = 1_790_000_040  # a multiple of 60


async def test_history_pages_newest_first_through_the_cursor(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    records = [record(BASE + i * 10, 100.0 + i) for i in range(7)]
    await store(dynamo, settings.prices_table, [*records, record(BASE, 1.0, asset="ethusdt")])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        body = await checked(await client.get("/prices/BTCUSDT/history", params=params))
        assert body["asset"] == "btcusdt"
        seen += [r["timestamp"] for r in body["records"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted((r.timestamp for r in records), reverse=True)
    assert pages == 3  # 3 + 3 + 1, no empty trailing page


async def test_history_range_is_inclusive_and_records_carry_price_and_updated_at(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    await store(dynamo, settings.prices_table, [record(BASE + i, 10.0 + i) for i in range(10)])
    body = await checked(await client.get(f"/prices/btcusdt/history?from={BASE + 2}&to={BASE + 4}"))
    assert body["records"] == [
        {"timestamp": BASE + t, "price": 10.0 + t, "updated_at": BASE + t + 1} for t in (4, 3, 2)
    ]
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("from=10&to=5", "from must not be after to"),
        ("from=abc", "from must be"),
        ("to=-1", "to must be"),
        ("limit=0", "limit must be between"),
        ("limit=1001", "limit must be between"),
        ("limit=1.5", "limit must be"),
        ("cursor=%%%", "cursor"),
        (f"cursor={encode_cursor('ethusdt', 5)}", "cursor"),
    ],
)
async def test_history_rejects_malformed_parameters(client: Client, query: str, fragment: str) -> None:
    response = await client.get(f"/prices/btcusdt/history?{query}")
    assert response.status == 400
    assert fragment in (await checked(response))["msg"]


async def test_history_of_an_unknown_symbol_is_400(client: Client) -> None:
    response = await client.get("/prices/nosuchcoin/history")
    assert response.status == 400
    await checked(response)


async def test_candles_from_stored_records(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    # Two records in the first minute, none in the second, three in the third.
    prices = {BASE + 5: 10.0, BASE + 50: 12.0, BASE + 125: 11.0, BASE + 130: 15.0, BASE + 170: 9.0}
    await store(dynamo, settings.prices_table, [record(t, p) for t, p in prices.items()])
    await backfill_asset(dynamo, settings.prices_table, "btcusdt")
    response = await client.get(f"/prices/btcusdt/candles?interval=1m&from={BASE}&to={BASE + 179}")
    body = await checked(response)
    assert body["interval"] == "1m"
    assert body["candles"] == [
        {"start": BASE, "open": 10.0, "high": 12.0, "low": 10.0, "close": 12.0, "samples": 2},
        {"start": BASE + 120, "open": 11.0, "high": 15.0, "low": 9.0, "close": 9.0, "samples": 3},
    ]
    five = await checked(await client.get(f"/prices/btcusdt/candles?interval=5m&from={BASE}&to={BASE + 179}"))
    # BASE is 240 s into a 5-minute interval: the records fall into two, each candle whole.
    assert [(c["start"], c["samples"]) for c in five["candles"]] == [(BASE - 240, 2), (BASE + 60, 3)]
    day = await checked(await client.get(f"/prices/btcusdt/candles?interval=1d&from={BASE}&to={BASE}"))
    assert day["candles"] == [
        {"start": BASE - BASE % 86_400, "open": 10.0, "high": 15.0, "low": 9.0, "close": 9.0, "samples": 5}
    ]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("interval=2m", "interval must be one of 1m, 5m, 1h"),
        ("interval=1m&from=0&to=600000", "more than 1000 candles"),
        ("from=9&to=1", "from must not be after to"),
    ],
)
async def test_candles_reject_bad_parameters(client: Client, query: str, fragment: str) -> None:
    response = await client.get(f"/prices/btcusdt/candles?{query}")
    assert response.status == 400
    assert fragment in (await checked(response))["msg"]


async def test_history_with_dynamodb_down_is_503(settings: Settings, aiohttp_client: Any) -> None:
    dead = dataclasses.replace(settings, dynamodb_endpoint=f"http://127.0.0.1:{free_port()}")
    client = await aiohttp_client(create_app(dead))
    for path in ("/prices/btcusdt/history", "/prices/btcusdt/candles"):
        response = await client.get(path)
        assert response.status == 503
        assert (await checked(response))["msg"] == "History store unavailable, try again"


history_records = st.lists(
    st.builds(
        record,
        st.integers(min_value=0, max_value=100_000),
        st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    ),
    unique_by=lambda r: r.timestamp,
    max_size=60,
)


async def test_history_queries_past_the_limit_are_refused_and_prices_still_served(
    settings: Settings, aiohttp_client: Any, exchanges: Any, redis_client: Any
) -> None:
    # Its own DynamoDB, paused so that the allowed queries stay in flight.
    dynamo = start_dynamo()
    try:
        app = create_app(dataclasses.replace(settings, dynamodb_endpoint=dynamo.url, history_max_queries=2))
        client = await aiohttp_client(app)
        assert (await client.post("/refresh/btcusdt")).status == 200
        dynamo.process.send_signal(signal.SIGSTOP)
        held = [
            asyncio.create_task(client.get("/prices/btcusdt/history")),
            asyncio.create_task(client.get("/prices/ethusdt/candles")),
        ]
        await poll(lambda: app[HISTORY_QUERIES].in_flight == 2)
        refused = await client.get("/prices/solusdt/history")
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "1"
        body = await checked(refused)
        assert body == {"msg": "Too many history queries in flight, try again shortly", "retry_after": 1}
        # Price reads do not queue behind history.
        assert (await checked(await client.get("/prices/btcusdt")))["asset"] == "btcusdt"
        metrics = await (await client.get("/metrics")).text()
        assert 'aggserver_history_queries_refused_total{reason="in_flight"} 1.0' in metrics
        dynamo.process.send_signal(signal.SIGCONT)
        answers = await asyncio.gather(*held)
        assert [a.status for a in answers] == [200, 200]
        assert app[HISTORY_QUERIES].in_flight == 0
    finally:
        dynamo.process.send_signal(signal.SIGCONT)
        dynamo.stop()
