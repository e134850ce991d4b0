"""``python -m bench.history_cpu``: this process's CPU per BatchWriteItem of 25 history records.

Writes 10,000 records through HistoryWriter into a local DynamoDB-compatible server, with
botocore's client-side parameter validation on and off, twice each, and prints the CPU time
(``time.process_time``: ours only, not the server's), which is what the writer takes from the
event loop that also serves requests.
"""

from __future__ import annotations

import asyncio
import os
import time

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from aggserver.history import HistoryRecord, HistoryWriter, ensure_table
from aggserver.localstack import DUMMY_AWS_ENV, start_dynamo

RECORDS = 10_000


async def _cpu_seconds(endpoint: str, table: str, *, validate: bool) -> float:
    config = AioConfig(retries={"mode": "standard", "max_attempts": 3}, parameter_validation=validate)
    session = get_session()
    async with session.create_client(
        "dynamodb", region_name="us-west-2", endpoint_url=endpoint, config=config
    ) as client:
        await ensure_table(client, table)
        writer = HistoryWriter(client, table, table_ready=True)
        for i in range(RECORDS):
            writer.submit(
                HistoryRecord(
                    asset=f"a{i % 500}", timestamp=1_790_000_000 + i, price=100 + i / 100, updated_at=1
                )
            )
        started = time.process_time()
        task = asyncio.create_task(writer.run())
        await writer.drain(task, timeout=600)
        return time.process_time() - started


def main() -> None:
    os.environ.update(DUMMY_AWS_ENV)
    dynamo = start_dynamo()
    try:
        for run in range(2):
            for validate in (True, False):
                cpu = uvloop.run(_cpu_seconds(dynamo.url, f"cpu{run}{int(validate)}", validate=validate))
                batches = RECORDS / 25
                print(
                    f"validation {'on ' if validate else 'off'}: {cpu:.2f} s CPU for {RECORDS:,} records, "
                    f"{cpu / batches * 1000:.2f} ms per batch of 25",
                    flush=True,
                )
    finally:
        dynamo.stop()


if __name__ == "__main__":
    main()
