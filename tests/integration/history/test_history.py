"""History in DynamoDB: the table, the items, and the outbox writer's guarantees."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import pytest
import redis.asyncio as redis
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import EndpointConnectionError
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.history.outbox import OutboxKeys, read_state, stage_records
from aggserver.history.records import HistoryRecord
from aggserver.history.writer import HistoryWriter
from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import start_dynamo
from tests.support import Exchanges, poll


async def query_all(dynamo: DynamoDBClient, table: str, asset: str) -> list[dict[str, Any]]:
    response = await dynamo.query(
        TableName=table,
        KeyConditionExpression="asset = :a",
        ExpressionAttributeValues={":a": {"S": asset}},
    )
    return list(response["Items"])


async def test_table_is_created_at_start_up_when_missing(settings: Settings, dynamo: DynamoDBClient) -> None:
    assert settings.prices_table not in (await dynamo.list_tables())["TableNames"]
    async with TestClient(TestServer(create_app(settings))):
        table = (await dynamo.describe_table(TableName=settings.prices_table))["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
            "asset": "HASH",
            "timestamp": "RANGE",
        }
        assert {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]} == {
            "asset": "S",
            "timestamp": "N",
        }


async def test_refresh_writes_a_typed_history_item(
    client: TestClient[Any, Any], settings: Settings, dynamo: DynamoDBClient
) -> None:
    await client.post("/refresh/btcusdt")
    cached = await (await client.get("/prices/btcusdt")).json()
    items = await poll(lambda: query_all(dynamo, settings.prices_table, "btcusdt"))
    assert len(items) == 1
    item = items[0]
    assert set(item) == {"asset", "timestamp", "price", "updated_at"}
    assert item["asset"] == {"S": "btcusdt"}
    assert item["timestamp"] == {"N": str(cached["last_updated"])}
    assert float(item["price"]["N"]) == cached["price"]
    assert int(item["updated_at"]["N"]) >= cached["last_updated"] - 1


async def test_sub_cent_price_is_stored_exactly(
    client: TestClient[Any, Any], exchanges: Exchanges, settings: Settings, dynamo: DynamoDBClient
) -> None:
    for index in range(3):
        await exchanges.pin(index, {"pepeusdt": {"price": 0.0000105123456789, "volume": 5.0}})
    await client.post("/refresh/pepeusdt")
    items = await poll(lambda: query_all(dynamo, settings.prices_table, "pepeusdt"))
    assert items[0]["price"]["N"] == "0.0000105123456789"


async def test_shutdown_flushes_every_queued_record(settings: Settings, dynamo: DynamoDBClient) -> None:
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        for symbol in ("btcusdt", "ethusdt", "solusdt", "adausdt", "xrpusdt"):
            assert (await client.post(f"/refresh/{symbol}")).status == 200
    # The client's exit ran the app's cleanup, which must have drained the writer.
    for symbol in ("btcusdt", "ethusdt", "solusdt", "adausdt", "xrpusdt"):
        assert len(await query_all(dynamo, settings.prices_table, symbol)) == 1


class FlakyDynamo:
    """An injected stand-in for the DynamoDB client: fails, then leaves items unprocessed."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.stored: dict[tuple[str, int], dict[str, Any]] = {}
        self.batch_sizes: list[int] = []

    async def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        self.batch_sizes.append(len(requests))
        keys = [
            (r["PutRequest"]["Item"]["asset"]["S"], r["PutRequest"]["Item"]["timestamp"]["N"])
            for r in requests
        ]
        assert len(set(keys)) == len(keys), "DynamoDB rejects a batch naming one key twice"
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise EndpointConnectionError(endpoint_url="http://dynamo")
        done, left = (
            (requests[: len(requests) // 2], requests[len(requests) // 2 :])
            if step == "half"
            else (requests, [])
        )
        for request in done:
            item = request["PutRequest"]["Item"]
            self.stored[(item["asset"]["S"], int(item["timestamp"]["N"]))] = item
        return {"UnprocessedItems": {table: left} if left else {}}


def record(asset: str, timestamp: int, price: float = 1.0) -> HistoryRecord:
    return HistoryRecord(asset=asset, timestamp=timestamp, price=price, updated_at=timestamp)


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def append(redis_client: redis.Redis, records: list[HistoryRecord]) -> None:
    async with redis_client.pipeline(transaction=True) as pipe:
        stage_records(pipe, records, OutboxKeys("prices"))
        await pipe.execute()


async def write_all(writer: HistoryWriter) -> None:
    """Run the writer until the outbox is empty (a stopped writer drains, then returns)."""
    task = asyncio.create_task(writer.run())
    await writer.drain(task, timeout=10)
    assert task.done()
    assert not task.cancelled()


async def test_writer_survives_outages_and_unprocessed_items(redis_client: redis.Redis) -> None:
    fake = FlakyDynamo(["down", "half", "down", "half", "ok"])
    writer = HistoryWriter(redis_client, cast(Any, fake), "prices", table_ready=True, sleep=no_sleep)
    await append(redis_client, [record(f"a{i % 7}", 1_000 + i) for i in range(60)])
    await write_all(writer)
    assert len(fake.stored) == 60
    assert writer.written == 60
    assert writer.retried > 0
    state = await read_state(redis_client, OutboxKeys("prices"))
    assert (state.backlog, state.written, state.dropped) == (0, 60, 0)
    assert state.retried == writer.retried


async def test_writer_merges_duplicate_keys_within_a_batch(redis_client: redis.Redis) -> None:
    fake = FlakyDynamo([])
    writer = HistoryWriter(redis_client, cast(Any, fake), "prices", table_ready=True, sleep=no_sleep)
    await append(redis_client, [record("btcusdt", 5, price=1.0), record("btcusdt", 5, price=2.0)])
    await write_all(writer)
    assert fake.stored[("btcusdt", 5)]["price"] == {"N": "2.0"}


@pytest.mark.parametrize("batch_size", [1, 25])
async def test_writer_respects_batch_size(redis_client: redis.Redis, batch_size: int) -> None:
    fake = FlakyDynamo([])
    writer = HistoryWriter(
        redis_client, cast(Any, fake), "prices", batch_size=batch_size, table_ready=True, sleep=no_sleep
    )
    await append(redis_client, [record("ethusdt", i) for i in range(30)])
    await write_all(writer)
    assert max(fake.batch_sizes) == batch_size
    assert len(fake.stored) == 30


async def test_history_works_against_moto_too(
    settings: Settings, exchanges: Exchanges, redis_client: object, aiohttp_client: Any
) -> None:
    """The fallback server where Node.js is missing: the app must not depend on dynalite."""
    moto = start_dynamo(backend="moto")
    try:
        moto_settings = dataclasses.replace(settings, dynamodb_endpoint=moto.url)
        client = await aiohttp_client(create_app(moto_settings))
        assert (await client.post("/refresh/bnbusdt")).status == 200
        async with get_session().create_client(
            "dynamodb", region_name=settings.aws_region, endpoint_url=moto.url
        ) as moto_client:
            items = await poll(lambda: query_all(moto_client, settings.prices_table, "bnbusdt"))
        assert items[0]["asset"] == {"S": "bnbusdt"}
    finally:
        moto.stop()


async def test_writer_keeps_the_later_record_of_a_key_across_concurrent_batches(
    redis_client: redis.Redis,
) -> None:
    fake = FlakyDynamo([])
    writer = HistoryWriter(
        redis_client, cast(Any, fake), "prices", batch_size=5, concurrency=4, table_ready=True, sleep=no_sleep
    )
    await append(
        redis_client,
        [
            record("btcusdt", 5, price=1.0),
            *(record("ethusdt", i) for i in range(12)),
            record("btcusdt", 5, price=2.0),
        ],
    )
    await write_all(writer)
    assert fake.stored[("btcusdt", 5)]["price"] == {"N": "2.0"}
    assert writer.written == 13
    assert max(fake.batch_sizes) <= 5
