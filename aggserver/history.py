"""DynamoDB history: table set-up and one background writer that batches every record.

Records are queued in memory and written by a single task in BatchWriteItem calls of at most
25 items, a few calls in flight at a time (one call is a round trip; a backlog after an
outage, or the flush at shutdown, would otherwise drain at one batch per round trip).
Anything DynamoDB leaves unprocessed, and any batch that fails outright, goes back to the
front of the queue and is retried with backoff, so an outage delays history instead of
losing it. Writes are idempotent: a record's key is (asset, timestamp), so a retry overwrites.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from aggserver.errors import HistoryUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "HistoryGate",
    "HistoryQueries",
    "HistoryRecord",
    "HistoryWriter",
    "LatestRecord",
    "decode_cursor",
    "encode_cursor",
    "ensure_table",
    "format_number",
    "latest_record",
]

log = logging.getLogger(__name__)

MAX_BATCH = 25  # DynamoDB's limit for one BatchWriteItem call
QUERY_TIMEOUT = 5.0
BACKOFF_START = 0.05
BACKOFF_MAX = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRecord:
    """One aggregate as stored: ``timestamp`` is the exchanges' time, ``updated_at`` ours."""

    asset: str
    timestamp: int
    price: float
    updated_at: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> HistoryRecord:
        return cls(
            asset=item["asset"]["S"],
            timestamp=int(item["timestamp"]["N"]),
            price=float(item["price"]["N"]),
            updated_at=int(item.get("updated_at", item["timestamp"])["N"]),
        )

    def to_item(self) -> dict[str, Any]:
        return {
            "asset": {"S": self.asset},
            "timestamp": {"N": str(self.timestamp)},
            "price": {"N": format_number(self.price)},
            "updated_at": {"N": str(self.updated_at)},
        }


def format_number(value: float) -> str:
    """A float as a DynamoDB number: plain decimal notation, every digit of its repr kept."""
    return format(Decimal(repr(value)), "f")


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
    items = response.get("Items", [])
    return HistoryRecord.from_item(items[0]) if items else None


def encode_cursor(asset: str, timestamp: int) -> str:
    """An opaque page cursor: the key after which the next page starts."""
    return base64.urlsafe_b64encode(f"{asset}:{timestamp}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, asset: str) -> int:
    """The timestamp a cursor of ``asset`` points after; ValueError when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this server gave out") from None
    named, _, timestamp = text.rpartition(":")
    if named != asset or not timestamp.isdigit():
        raise ValueError("cursor is not one this server gave out for this asset")
    return int(timestamp)


class HistoryQueries:
    """Reading an asset's records back, newest first or oldest first, in bounded pages."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    async def page(
        self, asset: str, *, start: int, end: int, limit: int, before: int | None = None
    ) -> tuple[list[HistoryRecord], bool]:
        """Up to ``limit`` records with start <= timestamp <= end (and < ``before``), newest
        first, and whether more follow."""
        if before is not None:
            end = min(end, before - 1)
        if end < start:
            return [], False
        records = await self._query(asset, start, end, newest_first=True, wanted=limit + 1)
        return records[:limit], len(records) > limit

    async def between(self, asset: str, *, start: int, end: int, max_records: int) -> list[HistoryRecord]:
        """Every record with start <= timestamp <= end, oldest first; ValueError past ``max_records``."""
        records = await self._query(asset, start, end, newest_first=False, wanted=max_records + 1)
        if len(records) > max_records:
            raise ValueError(f"more than {max_records} records in the range")
        return records

    async def _query(
        self, asset: str, start: int, end: int, *, newest_first: bool, wanted: int
    ) -> list[HistoryRecord]:
        records: list[HistoryRecord] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "asset = :asset AND #ts BETWEEN :start AND :end",
            "ExpressionAttributeNames": {"#ts": "timestamp"},
            "ExpressionAttributeValues": {
                ":asset": {"S": asset},
                ":start": {"N": str(start)},
                ":end": {"N": str(end)},
            },
            "ScanIndexForward": not newest_first,
        }
        # DynamoDB also stops at 1 MB per call: keep asking until enough or nothing is left.
        while len(records) < wanted:
            try:
                async with asyncio.timeout(QUERY_TIMEOUT):
                    response = await self._client.query(**query, Limit=wanted - len(records))
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                raise HistoryUnavailable(f"history query failed: {_describe(exc)}") from exc
            records.extend(HistoryRecord.from_item(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            query["ExclusiveStartKey"] = last
        return records


class HistoryGate:
    """Deviation + heartbeat, as price oracles publish: record an aggregate only when it moved
    more than ``deviation`` (relative) since the last record of the asset, or when
    ``heartbeat_seconds`` passed since then. A deviation of 0 records every aggregate."""

    def __init__(self, *, deviation: float, heartbeat_seconds: float) -> None:
        self._deviation = deviation
        self._heartbeat = heartbeat_seconds
        self._last: dict[str, tuple[float, float]] = {}

    def should_record(self, asset: str, price: float, now: float) -> bool:
        if self._deviation <= 0:
            return True
        last = self._last.get(asset)
        if last is not None:
            last_price, last_time = last
            if abs(price / last_price - 1) <= self._deviation and now - last_time < self._heartbeat:
                return False
        self._last[asset] = (price, now)
        return True


async def ensure_table(client: DynamoDBClient, table: str, *, timeout: float = 30.0) -> bool:
    """Create the prices table when missing and wait until it is active; True if we created it."""
    created = False
    try:
        description = await client.describe_table(TableName=table)
        status = description["Table"].get("TableStatus")
    except client.exceptions.ResourceNotFoundException:
        try:
            await client.create_table(
                TableName=table,
                KeySchema=[
                    {"AttributeName": "asset", "KeyType": "HASH"},
                    {"AttributeName": "timestamp", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "asset", "AttributeType": "S"},
                    {"AttributeName": "timestamp", "AttributeType": "N"},
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


class HistoryWriter:
    """Queues history records and writes them in batches from one background task."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        batch_size: int = MAX_BATCH,
        concurrency: int = 4,
        max_pending: int = 100_000,
        table_ready: bool = False,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self._batch_size = min(batch_size, MAX_BATCH)
        self._concurrency = concurrency
        self._max_pending = max_pending
        self._table_ready = table_ready
        self._sleep = sleep
        self._pending: deque[HistoryRecord] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.written = 0
        self.retried = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, record: HistoryRecord) -> None:
        """Queue a record; never blocks. Past ``max_pending`` the oldest is dropped and counted."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "history queue full (%d): %d records dropped so far", self._max_pending, self.dropped
                )
        self._pending.append(record)
        self._wakeup.set()

    async def run(self) -> None:
        """Write until stopped; on stop, return once the queue is empty (see :meth:`drain`)."""
        backoff = BACKOFF_START
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if await self._write_round():
                backoff = BACKOFF_START
            else:
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def drain(self, task: asyncio.Task[None], *, timeout: float) -> None:
        """Ask the writer to finish the queue and wait for it, at most ``timeout`` seconds."""
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.error("history flush timed out: %d records not written", len(self._pending))
            task.cancel()

    def _next_batches(self) -> list[list[HistoryRecord]]:
        # BatchWriteItem rejects a batch that names one key twice, and two batches in flight
        # together may land in either order: a key appears once per round, the later record winning.
        round_: dict[tuple[str, int], HistoryRecord] = {}
        limit = self._batch_size * self._concurrency
        while self._pending and len(round_) < limit:
            record = self._pending.popleft()
            round_[(record.asset, record.timestamp)] = record
        records = list(round_.values())
        return [records[i : i + self._batch_size] for i in range(0, len(records), self._batch_size)]

    async def _write_round(self) -> bool:
        """Write up to ``concurrency`` batches at once; False when the caller should back off."""
        if not self._table_ready:
            try:
                await ensure_table(self._client, self._table)
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                log.warning("history table not ready (%s); %d records queued", _describe(exc), self.pending)
                return False
            self._table_ready = True
        tasks = []
        try:
            for batch in self._next_batches():
                tasks.append(asyncio.create_task(self._write(batch)))
                # Each call spends a few milliseconds of CPU in botocore before its first await:
                # let waiting requests run between two of them instead of after all of them.
                await asyncio.sleep(0)
            return all(await asyncio.gather(*tasks))
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise

    async def _write(self, batch: list[HistoryRecord]) -> bool:
        try:
            response = await self._client.batch_write_item(
                RequestItems={self._table: [{"PutRequest": {"Item": r.to_item()}} for r in batch]}
            )
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            self._requeue(batch)
            log.warning("history write failed (%s); %d records queued", _describe(exc), len(self._pending))
            return False
        unprocessed = response.get("UnprocessedItems", {}).get(self._table, [])
        if unprocessed:
            keys = {
                (req["PutRequest"]["Item"]["asset"]["S"], int(req["PutRequest"]["Item"]["timestamp"]["N"]))
                for req in unprocessed
            }
            retry = [r for r in batch if (r.asset, r.timestamp) in keys]
            self.written += len(batch) - len(retry)
            self._requeue(retry)
            return False
        self.written += len(batch)
        return True

    def _requeue(self, batch: list[HistoryRecord]) -> None:
        self.retried += len(batch)
        self._pending.extendleft(reversed(batch))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
