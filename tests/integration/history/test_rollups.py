"""Candle rollups: the merge of candles (pure, property-tested), their upkeep by the history
writers against real Redis and DynamoDB-compatible servers, the backfill, and reads that cost
one item a candle."""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from aggserver.domain.candles import INTERVALS, Candle, build_candles
from aggserver.errors import HistoryBusy
from aggserver.history.backfill import backfill_asset
from aggserver.history.dynamo import ensure_table
from aggserver.history.outbox import OutboxKeys
from aggserver.history.reads import HistoryQueries
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import ROLLUP_LEVELS, block_start, ensure_rollup_table, settled_before
from aggserver.history.rollups.reads import read_candles
from aggserver.history.rollups.upkeep import RollupMaintainer
from aggserver.settings import Settings
from devstack.services import Service
from tests.rollup_records import BASE, DAY, record, stored
from tests.support import checked, poll, server_env

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Client = TestClient[Any, Any]


async def write_raw(dynamo: DynamoDBClient, table: str, records: list[HistoryRecord]) -> None:
    await ensure_table(dynamo, table)
    await ensure_rollup_table(dynamo, table)
    for start in range(0, len(records), 25):
        batch = stored(records[start : start + 25])
        await dynamo.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": r.to_item()}} for r in batch]}
        )


async def all_rollups(dynamo: DynamoDBClient, table: str, asset: str) -> dict[str, list[Candle]]:
    found = {}
    for name in INTERVALS:
        candles, _ = await read_candles(dynamo, table, asset, name, 0, BASE + 30 * DAY, now=BASE + 60 * DAY)
        found[name] = candles
    return found


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def run_until_no_marks(maintainer: RollupMaintainer, clock: Clock, redis_client: redis.Redis) -> int:
    """Passes with the clock moved past every delay, until no mark is left; the passes run."""
    keys = OutboxKeys(maintainer._prices_table)
    for passes in range(1, 20):
        clock.now += max(level.delay for level in ROLLUP_LEVELS.values()) + 1
        await maintainer.run_pass()
        if not any([await redis_client.zcard(keys.rollup_marks(name)) for name in INTERVALS]):
            return passes
    raise AssertionError("marks left after 20 passes")


async def test_writers_keep_rollups_equal_to_candles_from_raw_records(
    dynamo: DynamoDBClient, redis_client: redis.Redis, settings: Settings
) -> None:
    table = settings.prices_table
    rnd = random.Random(19)
    # Two days of a hot asset, a record every few seconds, written in shuffled batches with
    # duplicates (a writer retrying, another taking over) and marked as each batch is written.
    records = [record(BASE + t, 100 + rnd.uniform(-5, 5)) for t in range(0, 2 * DAY, 97)]
    arrivals = records + rnd.sample(records, 200)
    rnd.shuffle(arrivals)
    clock = Clock(BASE + 3 * DAY)
    maintainer = RollupMaintainer(redis_client, dynamo, table, clock=clock)
    for start in range(0, len(arrivals), 300):
        batch = arrivals[start : start + 300]
        await write_raw(dynamo, table, batch)
        await maintainer.mark(batch)
        if start % 900 == 0:
            clock.now += 45
            await maintainer.run_pass()  # some candles recomputed while records still arrive
    await run_until_no_marks(maintainer, clock, redis_client)
    rollups = await all_rollups(dynamo, table, "btcusdt")
    for name, interval in INTERVALS.items():
        assert rollups[name] == build_candles(records, interval), name
    assert len(rollups["1d"]) == 2


async def test_a_mark_claimed_by_a_writer_that_died_comes_due_again(
    dynamo: DynamoDBClient, redis_client: redis.Redis, settings: Settings
) -> None:
    table = settings.prices_table
    await write_raw(dynamo, table, [record(BASE + 5, 10.0)])
    clock = Clock(BASE + DAY)
    maintainer = RollupMaintainer(redis_client, dynamo, table, clock=clock)
    await maintainer.mark([record(BASE + 5, 10.0)])
    key = OutboxKeys(table).rollup_marks("1m")
    clock.now += ROLLUP_LEVELS["1m"].delay + 1
    # Another writer claims the mark and dies before releasing it.
    claimed = await maintainer._claim(
        keys=[key], args=[int(clock.now * 1000), int(clock.now * 1000) + 120_000, 10]
    )
    assert claimed == [f"btcusdt|{BASE}".encode()]
    assert await maintainer.run_pass() == 0  # claimed: nobody else takes it
    clock.now += 121
    assert await maintainer.run_pass() >= 1
    assert (await all_rollups(dynamo, table, "btcusdt"))["1m"] == [
        Candle(start=BASE, open=10.0, high=10.0, low=10.0, close=10.0, samples=1)
    ]


async def test_backfill_writes_what_the_writers_would(
    dynamo: DynamoDBClient, redis_client: redis.Redis, settings: Settings
) -> None:
    table = settings.prices_table
    rnd = random.Random(5)
    records = [record(BASE + rnd.randrange(3 * DAY), rnd.uniform(1, 2)) for _ in range(3_000)]
    await write_raw(dynamo, table, records)
    written = await backfill_asset(dynamo, table, "btcusdt", page=700)
    expected = {name: build_candles(stored(records), interval) for name, interval in INTERVALS.items()}
    blocks = {(name, block_start(name, c.start)) for name, candles in expected.items() for c in candles}
    assert written == len(blocks)
    assert await all_rollups(dynamo, table, "btcusdt") == expected
    # Again: the same items.
    assert await backfill_asset(dynamo, table, "btcusdt") == written
    assert await all_rollups(dynamo, table, "btcusdt") == expected


async def test_the_backfill_command_covers_the_named_assets(
    dynamo: DynamoDBClient, settings: Settings, redis_service: Service
) -> None:
    table = settings.prices_table
    await write_raw(
        dynamo, table, [record(BASE + 60 * i, 1.0 + i, asset) for i in range(3) for asset in ("a", "b")]
    )
    env = server_env(settings, redis_service.url, 0)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "aggserver", "backfill-candles", "--assets", "A, b,c"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # a and b: a 1m, 5m, 1h and 1d block each; c has no records.
    assert done.stdout.splitlines()[-1] == "backfill-candles: 8 rollup items written for 3 assets"
    assert sorted(done.stdout.splitlines()[:-1]) == ["a: 4 items", "b: 4 items"]
    candles, _ = await read_candles(dynamo, table, "b", "5m", BASE, BASE, now=BASE + 60 * DAY)
    assert candles == [Candle(start=BASE, open=1.0, high=3.0, low=1.0, close=3.0, samples=3)]


async def test_a_wide_candle_range_reads_a_few_items_not_its_records(
    dynamo: DynamoDBClient, settings: Settings
) -> None:
    table = settings.prices_table
    # 13 hours of a record every 2 s: 23,400 records, 13 candles of 1h, 780 of 1m.
    records = [record(BASE + t, 50 + (t % 977) / 100) for t in range(0, 13 * 3_600, 2)]
    await write_raw(dynamo, table, records)
    await backfill_asset(dynamo, table, "btcusdt")
    last = BASE + 12 * 3_600
    later = BASE + 2 * DAY
    hours, read = await read_candles(dynamo, table, "btcusdt", "1h", BASE, last, now=later)
    assert hours == build_candles(records, 3_600)
    assert (read.items, read.rows) == (1, 13)  # one item holds a day of 1h candles
    minutes, read = await read_candles(dynamo, table, "btcusdt", "1m", BASE, last + 3_540, now=later)
    assert minutes == build_candles(records, 60)
    assert (read.items, read.rows) == (26, 780)  # half an hour of 1m candles an item
    # Read while the last hour is still being written: the newest candles come from the levels
    # below, down to the raw records of the last minutes (the only part read record by record).
    now = last + 3_600
    recent, read = await read_candles(dynamo, table, "btcusdt", "1h", BASE, last, now=now)
    assert recent == hours
    raw_tail = sum(1 for r in records if r.timestamp >= settled_before("1m", now))
    assert raw_tail < len(records) / 20
    assert raw_tail < read.items <= raw_tail + 20


async def test_queries_refuse_past_the_records_per_second_budget(
    dynamo: DynamoDBClient, settings: Settings
) -> None:
    table = settings.prices_table
    await write_raw(dynamo, table, [record(BASE + t, 1.0) for t in range(150)])
    clock = Clock(0.0)
    queries = HistoryQueries(dynamo, table, records_per_second=120, clock=clock)
    # 101 reserved (a page and whether more follow), 101 decoded: 19 left.
    assert len((await queries.page("btcusdt", start=0, end=BASE + DAY, limit=100))[0]) == 100
    with pytest.raises(HistoryBusy) as refused:
        await queries.page("btcusdt", start=0, end=BASE + DAY, limit=100)
    assert refused.value.retry_after == 1  # 82 short at 120 a second
    assert queries.refused == {"records": 1}
    # A page that decodes less than it reserved pays only what it decoded.
    clock.now += 0.5  # 79 in the bucket
    assert len((await queries.page("btcusdt", start=BASE + 100, end=BASE + 109, limit=50))[0]) == 10
    assert len((await queries.page("btcusdt", start=0, end=BASE + DAY, limit=60))[0]) == 60


async def test_the_writer_marks_what_it_writes_and_fresh_candles_come_from_the_records(
    client: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    assert (await client.post("/refresh/btcusdt")).status == 200
    key = OutboxKeys(settings.prices_table).rollup_marks("1m")
    marks = await poll(lambda: redis_client.zrange(key, 0, -1))
    assert [m.decode().split("|")[0] for m in marks] == ["btcusdt"]
    body = await checked(await client.get("/prices/btcusdt/candles?interval=1m"))
    assert [c["samples"] for c in body["candles"]] == [1]
    assert f"btcusdt|{block_start('1m', body['candles'][0]['start'])}".encode() in marks


async def test_price_reads_keep_answering_while_history_floods(
    client: Client, dynamo: DynamoDBClient, settings: Settings
) -> None:
    await write_raw(dynamo, settings.prices_table, [record(BASE + t, 1.0, "ethusdt") for t in range(3_000)])
    assert (await client.post("/refresh/btcusdt")).status == 200
    statuses: collections.Counter[int] = collections.Counter()

    async def pages(n: int) -> None:
        for _ in range(n):
            response = await client.get("/prices/ethusdt/history?limit=1000")
            statuses[response.status] += 1
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1

    async def wide_candles(n: int) -> None:
        for _ in range(n):
            response = await client.get(f"/prices/ethusdt/candles?interval=1m&from={BASE}&to={BASE + 59_940}")
            statuses[response.status] += 1

    flood = [asyncio.create_task(pages(15)) for _ in range(8)] + [
        asyncio.create_task(wide_candles(10)) for _ in range(4)
    ]
    answered = 0
    while not all(task.done() for task in flood):
        body = await checked(await client.get("/prices/btcusdt"))
        assert body["asset"] == "btcusdt"
        answered += 1
    await asyncio.gather(*flood)
    assert answered > 0
    assert set(statuses) <= {200, 429}
    assert statuses[200] > 0
    assert statuses[429] > 0  # 8 pagers and 4 wide candle readers are more than the 4 allowed
