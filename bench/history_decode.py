"""``python -m bench.history_decode``: what one history record costs the serving loop.

Seeds one asset with 10,000 records in a local DynamoDB-compatible server, then reads them back
in pages of 100, 1,000 and 10,000 records, through botocore's parser and through the lean client
(``aggserver/history/lean_query.py``), ``--rounds`` times alternately; prints the median CPU per record of
the query and of encoding the API's answer, and the answer's bytes per record. The CPU is this
process's (``time.process_time``): the server's loop would spend the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import orjson

from aggserver.history.dynamo import dynamo_client, ensure_table, lean_dynamo_client
from aggserver.history.lean_query import query_answer
from aggserver.history.records import HistoryRecord
from aggserver.settings import Settings
from devstack.services import DUMMY_AWS_ENV, start_dynamo

RECORDS = 10_000
PAGES = (100, 1_000, 10_000)
TABLE = "decode"


async def read_pages(client: Any, limit: int) -> tuple[float, float, int]:
    """CPU seconds to read every record in pages of ``limit``, CPU to encode the answers, bytes."""
    query: dict[str, Any] = {
        "TableName": TABLE,
        "KeyConditionExpression": "asset = :a",
        "ExpressionAttributeValues": {":a": {"S": "ethusdt"}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    read_cpu = encode_cpu = 0.0
    size = 0
    while True:
        started = time.process_time()
        answer = query_answer(await client.query(**query))
        records = [HistoryRecord.from_item(item) for item in answer.items]
        read_cpu += time.process_time() - started
        started = time.process_time()
        body = orjson.dumps(
            {
                "asset": "ethusdt",
                "records": [
                    {"timestamp": r.timestamp, "price": r.price, "updated_at": r.updated_at} for r in records
                ],
                "next_cursor": None,
            }
        )
        encode_cpu += time.process_time() - started
        size += len(body)
        if answer.last_key is None:
            return read_cpu, encode_cpu, size
        query["ExclusiveStartKey"] = answer.last_key


async def measure(url: str, rounds: int) -> None:
    settings = Settings.from_env({**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": url})
    async with dynamo_client(settings) as botocore_client, lean_dynamo_client(settings) as lean_client:
        await ensure_table(botocore_client, TABLE)
        base = 1_790_000_000
        for start in range(0, RECORDS, 25):
            await botocore_client.batch_write_item(
                RequestItems={
                    TABLE: [
                        {
                            "PutRequest": {
                                "Item": HistoryRecord(
                                    asset="ethusdt",
                                    timestamp=base + i,
                                    price=3000 + i / 7,
                                    updated_at=base + i,
                                ).to_item()
                            }
                        }
                        for i in range(start, start + 25)
                    ]
                }
            )
        figures: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
        for _ in range(rounds):
            for name, client in (("botocore", botocore_client), ("lean", lean_client)):
                for limit in PAGES:
                    figures.setdefault((name, limit), []).append(await read_pages(client, limit))
    print("| decoder | page | query µs/record | answer encoding µs/record | answer bytes/record |")
    print("|---|---|---|---|---|")
    for (name, limit), runs in figures.items():
        read = statistics.median(r[0] for r in runs) / RECORDS * 1e6
        encode = statistics.median(r[1] for r in runs) / RECORDS * 1e6
        size = runs[0][2] / RECORDS
        print(f"| {name} | {limit:,} | {read:.1f} | {encode:.2f} | {size:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_decode", description=__doc__)
    parser.add_argument(
        "--rounds", type=int, default=5, help="reads per decoder and page (default %(default)s)"
    )
    args = parser.parse_args()
    os.environ.update(DUMMY_AWS_ENV)
    dynamo = start_dynamo()
    try:
        asyncio.run(measure(dynamo.url, args.rounds))
    finally:
        dynamo.stop()


if __name__ == "__main__":
    main()
