"""DynamoDB history: the client, table set-up and reading records back (their format: ``history/records.py``).

Records reach DynamoDB through the outbox (``history/outbox.py``) and its writers (``history/writer.py``).
A record's key is (asset, timestamp), so writing one again overwrites it with the same item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import ClientCreatorContext, get_session
from botocore.exceptions import BotoCoreError, ClientError

from aggserver.history.lean_query import make_lean, query_answer
from aggserver.history.records import HistoryRecord
from aggserver.process.backoff import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

    from aggserver.settings import Settings

__all__ = [
    "HistoryTable",
    "LatestRecord",
    "describe_error",
    "dynamo_client",
    "ensure_table",
    "latest_record",
    "lean_dynamo_client",
    "put_batch",
    "range_query",
]

log = logging.getLogger(__name__)

MAX_BATCH = 25  # DynamoDB's limit for one BatchWriteItem call


def range_query(table: str, asset: str, start: int, end: int, *, newest_first: bool) -> dict[str, Any]:
    """A Query of ``asset``'s records with start <= timestamp <= end. It fetches only what
    :func:`record_decoder` needs: the asset is the query's own, not read back from each item."""
    return {
        "TableName": table,
        "KeyConditionExpression": "asset = :asset AND #ts BETWEEN :start AND :end",
        "ProjectionExpression": "#ts, price, updated_at",
        "ExpressionAttributeNames": {"#ts": "timestamp"},
        "ExpressionAttributeValues": {
            ":asset": {"S": asset},
            ":start": {"N": str(start)},
            ":end": {"N": str(end)},
        },
        "ScanIndexForward": not newest_first,
    }


def dynamo_client(settings: Settings) -> ClientCreatorContext[DynamoDBClient]:
    """A DynamoDB client for ``settings`` (use with ``async with``)."""
    config = AioConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
        # Items are built by HistoryRecord.to_item and DynamoDB validates them anyway; botocore's
        # own check costs 7-17 % of the CPU of each BatchWriteItem (python -m bench.history_cpu:
        # 4.6-5.3 ms per batch of 25 with it, 3.8-4.8 ms without).
        parameter_validation=False,
    )
    return get_session().create_client(
        "dynamodb", region_name=settings.aws_region, endpoint_url=settings.dynamodb_endpoint, config=config
    )


@contextlib.asynccontextmanager
async def lean_dynamo_client(settings: Settings) -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client whose Query answers skip botocore's parser (``history/lean_query.py``)."""
    async with dynamo_client(settings) as client:
        yield make_lean(client)


# The newest record of an asset, with the client and table already bound.
LatestRecord = Callable[[str], Awaitable["HistoryRecord | None"]]


async def latest_record(client: DynamoDBClient, table: str, asset: str) -> HistoryRecord | None:
    """The newest record of ``asset``, or None when it has none."""
    response = await client.query(
        TableName=table,
        KeyConditionExpression="asset = :asset",
        ExpressionAttributeValues={":asset": {"S": asset}},
        ScanIndexForward=False,
        Limit=1,
    )
    items = query_answer(response).items
    return HistoryRecord.from_item(items[0]) if items else None


async def put_batch(
    client: DynamoDBClient,
    table: str,
    items: Sequence[dict[str, Any]],
    *,
    backoff: Backoff,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    attempts: int | None = None,
    on_unprocessed: Callable[[int], object] = lambda _count: None,
) -> None:
    """Put ``items`` (at most MAX_BATCH) with one BatchWriteItem, and what DynamoDB leaves
    unprocessed again after ``backoff``, until all are in (``attempts`` calls at most: past them
    TimeoutError). Writes are idempotent (same key, same item), so a retry never duplicates;
    transport and server errors are the caller's to retry. ``on_unprocessed`` hears how many
    items each retry puts again."""
    requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
    made = 0
    while requests:
        if attempts is not None and made >= attempts:
            raise TimeoutError(f"{len(requests)} items still unprocessed after {attempts} attempts")
        if made:
            on_unprocessed(len(requests))
            await sleep(backoff.next())
        response = await client.batch_write_item(RequestItems={table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(table, []))
        made += 1


class HistoryTable:
    """The prices table as the serving side reads it: an asset's latest record, and whether the
    table answers at all (for ``/ready``)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def latest(self, asset: str) -> HistoryRecord | None:
        return await latest_record(self._client, self._table, asset)

    async def answers(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._client.describe_table(TableName=self._table)
        except (BotoCoreError, ClientError, TimeoutError):
            return False
        return True


async def ensure_table(
    client: DynamoDBClient,
    table: str,
    *,
    key: tuple[str, str] = ("asset", "timestamp"),
    timeout: float = 30.0,
) -> bool:
    """Create ``table`` when missing and wait until it is active; True if we created it. ``key``
    names its string partition key and numeric sort key (the prices table's by default)."""
    partition, sort = key
    created = False
    try:
        description = await client.describe_table(TableName=table)
        status = description["Table"].get("TableStatus")
    except client.exceptions.ResourceNotFoundException:
        try:
            await client.create_table(
                TableName=table,
                KeySchema=[
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": sort, "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": partition, "AttributeType": "S"},
                    {"AttributeName": sort, "AttributeType": "N"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
            log.info("created DynamoDB table %s", table)
        except client.exceptions.ResourceInUseException:
            pass  # another instance created it first
        status = "CREATING"
    deadline = time.monotonic() + timeout
    while status != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table} not active after {timeout} s")
        await asyncio.sleep(0.05)
        description = await client.describe_table(TableName=table)
        status = description["Table"].get("TableStatus")
    return created


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
