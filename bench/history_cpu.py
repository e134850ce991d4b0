"""``python -m bench.history_cpu``: what one history writer costs and sustains.

Appends 10,000 records to the outbox of a throw-away redis-server, then lets one HistoryWriter
move them into a local DynamoDB-compatible server, with botocore's client-side parameter
validation on and off, twice each. Prints the writer's CPU time (``time.process_time``: this
process only, not the servers') per BatchWriteItem of 25 records, and the records per second
it sustained (wall clock, so bounded by the DynamoDB server as much as by the writer).
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio as redis
import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from aggserver.history.dynamo import ensure_table
from aggserver.history.outbox import OutboxKeys, stage_records
from aggserver.history.records import HistoryRecord
from aggserver.history.writer import HistoryWriter
from devstack.services import DUMMY_AWS_ENV, start_dynamo, start_redis

RECORDS = 10_000


async def _one_run(dynamo_url: str, redis_url: str, table: str, *, validate: bool) -> tuple[float, float]:
    config = AioConfig(retries={"mode": "standard", "max_attempts": 3}, parameter_validation=validate)
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    records = [
        HistoryRecord(asset=f"a{i % 500}", timestamp=1_790_000_000 + i, price=100 + i / 100, updated_at=1)
        for i in range(RECORDS)
    ]
    async with client.pipeline(transaction=False) as pipe:
        stage_records(pipe, records, OutboxKeys(table))
        await pipe.execute()
    async with get_session().create_client(
        "dynamodb", region_name="us-west-2", endpoint_url=dynamo_url, config=config
    ) as dynamo:
        await ensure_table(dynamo, table)
        writer = HistoryWriter(client, dynamo, table, table_ready=True)
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        task = asyncio.create_task(writer.run())
        await writer.drain(task, timeout=600)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
    await client.aclose()
    if writer.written != RECORDS:
        raise SystemExit(f"wrote {writer.written} of {RECORDS} records")
    return cpu, wall


def main() -> None:
    os.environ.update(DUMMY_AWS_ENV)
    dynamo = start_dynamo()
    redis_server = start_redis()
    try:
        for run in range(2):
            for validate in (True, False):
                cpu, wall = uvloop.run(
                    _one_run(dynamo.url, redis_server.url, f"cpu{run}{int(validate)}", validate=validate)
                )
                print(
                    f"validation {'on ' if validate else 'off'}: {cpu:.2f} s CPU for {RECORDS:,} records, "
                    f"{cpu / (RECORDS / 25) * 1000:.2f} ms per batch of 25; "
                    f"{RECORDS / wall:,.0f} records/s sustained",
                    flush=True,
                )
    finally:
        redis_server.stop()
        dynamo.stop()


if __name__ == "__main__":
    main()
