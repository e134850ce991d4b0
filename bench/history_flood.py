"""``python -m bench.history_flood [--before DIR]``: hot GETs alone and while history floods.

Seeds ``ethusdt`` with 55,000 history records (one a second, up to now) and writes their candle
rollups with ``aggserver backfill-candles`` (timed). Then, for this checkout and, with
``--before``, an older one (``git worktree add /tmp/before <commit>``), in alternating rounds: a
server pinned to core 0 with per-client budgets off (so only the server's own history bounds
protect it) answers

- 20 unloaded requests each for a 13-hour range of 1h candles and a 1,000-record history page
  (median and worst latency);
- wrk's hot ``GET /prices/btcusdt`` on core 1, alone and during ``python -m bench.abuse history``
  from 127.0.0.2 on the same core (8 connections paging 1,000 records at a time and 4 asking for
  the 1,000 newest 1m candles, back to back, waiting out 429s).

Prints each run, the medians, and the flood's cost as ratios within the run: throughput during /
alone and p99 during / alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from bench.runner import HOT_PATH, Figures, _flood, _running, measure, server_env, start_server, start_writer
from devstack.services import free_port, local_dynamo_client, start_dynamo, start_mockex, start_redis

ASSET = "ethusdt"
RECORDS = 55_000
TABLE = "prices_flood"
LATENCY_SAMPLES = 20


def create_table(client: Any, table: str) -> None:
    """The prices table (asset, timestamp), unless it exists."""
    with suppress(client.exceptions.ResourceInUseException):
        client.create_table(
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


def seed(dynamo_url: str, count: int) -> float:
    """``count`` records of ASSET, one a second up to now; returns the newest timestamp."""
    client = local_dynamo_client(dynamo_url)
    create_table(client, TABLE)
    newest = int(time.time())
    oldest = newest - count + 1
    for start in range(oldest, newest + 1, 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "asset": {"S": ASSET},
                        "timestamp": {"N": str(t)},
                        "price": {"N": f"{3000 + (t % 600) / 10:.1f}"},
                        "updated_at": {"N": str(t + 1)},
                    }
                }
            }
            for t in range(start, min(start + 25, newest + 1))
        ]
        client.batch_write_item(RequestItems={TABLE: items})
    return newest


def timed_gets(url: str, samples: int) -> tuple[list[float], int, int]:
    """``samples`` sequential GETs of ``url``: their latencies in ms, the 429s waited out on the
    way (their Retry-After; asked again, uncounted) and the answer's size."""
    times: list[float] = []
    refused = size = 0
    while len(times) < samples:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our loopback
                size = len(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                raise
            refused += 1
            time.sleep(float(exc.headers.get("Retry-After", "1")))
            continue
        times.append((time.perf_counter() - started) * 1000)
    return times, refused, size


def latency_ms(url: str) -> tuple[float, float, int]:
    """Median and worst of LATENCY_SAMPLES sequential GETs, and the answer's size."""
    times, _, size = timed_gets(url, LATENCY_SAMPLES)
    return statistics.median(times), max(times), size


def one_build(env: dict[str, str], checkout: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    server, _ = start_server({**env, "PRICES_TABLE": TABLE}, free_port(), checkout=checkout)
    try:
        now = int(time.time())
        thirteen_hours = f"interval=1h&from={now - 13 * 3600}&to={now}"
        candles = latency_ms(f"{server.url}/prices/{ASSET}/candles?{thirteen_hours}")
        page = latency_ms(f"{server.url}/prices/{ASSET}/history?limit=1000")
        print(
            f"  13-hour 1h candles: median {candles[0]:.1f} ms, worst {candles[1]:.1f} ms; "
            f"1,000-record page: median {page[0]:.1f} ms, worst {page[1]:.1f} ms ({page[2]:,} bytes)",
            flush=True,
        )
        alone = measure("hot alone", server, HOT_PATH, args)
        with _flood("history", server.url, args.duration * (args.repeat + 1) + 5):
            during = measure("hot during history flood", server, HOT_PATH, args)
    finally:
        server.stop()
    return {
        "candles_13h_ms": candles[0],
        "page_1000_ms": page[0],
        "page_1000_bytes": page[2],
        "alone": alone,
        "during": during,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_flood", description=__doc__)
    parser.add_argument("--before", type=Path, help="an older checkout to measure in the same run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per build (default %(default)s)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="wrk runs a measurement (default %(default)s)")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections (default %(default)s)")
    args = parser.parse_args(argv)
    builds: dict[str, Path | None] = {"after": None}
    if args.before:
        builds = {"before": args.before.resolve(), **builds}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in builds}
    with ExitStack() as stack:
        redis = stack.enter_context(_running(start_redis()))
        dynamo = stack.enter_context(_running(start_dynamo()))
        exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
        env = server_env(redis.url, dynamo.url, exchanges)
        started = time.monotonic()
        seed(dynamo.url, RECORDS)
        print(f"seeded {RECORDS:,} records of {ASSET} in {time.monotonic() - started:.1f} s", flush=True)
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "aggserver", "backfill-candles", "--assets", ASSET],
            env={**env, "PRICES_TABLE": TABLE},
            check=True,
            capture_output=True,
        )
        print(f"backfill-candles for {ASSET}: {time.monotonic() - started:.1f} s", flush=True)
        stack.enter_context(_running(start_writer({**env, "PRICES_TABLE": TABLE})))
        for round_ in range(args.rounds):
            for name, checkout in builds.items():
                print(f"round {round_ + 1}, {name}:", flush=True)
                results[name].append(one_build(env, checkout, args))
    print(
        "\n| build | 13-h 1h candles ms | 1,000-record page ms | hot alone req/s | during req/s | "
        "ratio | p99 alone ms | p99 during ms | p99 ratio |\n|---|---|---|---|---|---|---|---|---|"
    )
    summary = {}
    for name, runs in results.items():
        alone: list[Figures] = [r["alone"] for r in runs]
        during: list[Figures] = [r["during"] for r in runs]
        row = {
            "candles_13h_ms": statistics.median(r["candles_13h_ms"] for r in runs),
            "page_1000_ms": statistics.median(r["page_1000_ms"] for r in runs),
            "alone_rps": statistics.median(f.requests_per_s for f in alone),
            "during_rps": statistics.median(f.requests_per_s for f in during),
            "ratio": statistics.median(
                d.requests_per_s / a.requests_per_s for a, d in zip(alone, during, strict=True)
            ),
            "p99_alone_ms": statistics.median(f.p99_ms for f in alone),
            "p99_during_ms": statistics.median(f.p99_ms for f in during),
            "p99_ratio": statistics.median(d.p99_ms / a.p99_ms for a, d in zip(alone, during, strict=True)),
        }
        summary[name] = row
        print(
            f"| {name} | {row['candles_13h_ms']:.1f} | {row['page_1000_ms']:.1f} | {row['alone_rps']:,.0f} | "
            f"{row['during_rps']:,.0f} | {row['ratio']:.2f} | {row['p99_alone_ms']:.2f} | "
            f"{row['p99_during_ms']:.2f} | {row['p99_ratio']:.1f}x |"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
