"""``python -m bench.oracle``: latency of the oracle answers against dynalite.

Seeds ``ethusdt`` with one record every 5 s for the last 8 hours (the hot tier's cadence: 5,760
records) and 100 assets with one record each, writes the candle rollups (``backfill-candles``),
then asks a server pinned to core 0, one request at a time (per-client budgets off):

- ``at``: one asset's record in force 30 minutes ago;
- ``at`` batch: 100 assets at once;
- ``twap`` over 10 minutes and 1 hour (from the records: 120 and 720) and 6 hours (1m candles);
- ``change`` over 1 hour.

Prints the median, p90 and worst of ``--samples`` requests each, and the 429s waited out on the
way (a 1-hour TWAP at that cadence decodes 720 records, so back to back they meet the history
read budget).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from bench.history_flood import create_table, timed_gets
from bench.runner import _running, server_env, start_server
from devstack.services import free_port, local_dynamo_client, start_dynamo, start_mockex, start_redis

ASSET = "ethusdt"
TABLE = "prices_oracle"
CADENCE = 5
SPAN = 8 * 3600
BATCH = 100


def seed(dynamo_url: str) -> tuple[int, list[str]]:
    """The records (see the module's doc); returns the newest timestamp and the batch's assets."""
    client = local_dynamo_client(dynamo_url)
    create_table(client, TABLE)
    newest = int(time.time())
    items = [
        {
            "asset": {"S": ASSET},
            "timestamp": {"N": str(t)},
            "price": {"N": f"{3000 + (t % 600) / 10:.1f}"},
            "updated_at": {"N": str(t + 1)},
        }
        for t in range(newest - SPAN, newest + 1, CADENCE)
    ]
    batch = [s for s in load_symbols(DEFAULT_SYMBOLS_FILE).ordered if s != ASSET][:BATCH]
    items += [
        {
            "asset": {"S": asset},
            "timestamp": {"N": str(newest - 3600)},
            "price": {"N": "1.5"},
            "updated_at": {"N": str(newest - 3600)},
        }
        for asset in batch
    ]
    for start in range(0, len(items), 25):
        puts = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={TABLE: puts})
    return newest, batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oracle", description=__doc__)
    parser.add_argument("--samples", type=int, default=50, help="requests per answer (default %(default)s)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        redis = stack.enter_context(_running(start_redis()))
        dynamo = stack.enter_context(_running(start_dynamo()))
        exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
        env = server_env(redis.url, dynamo.url, exchanges, PRICES_TABLE=TABLE, AUTO_REFRESH="false")
        newest, batch = seed(dynamo.url)
        subprocess.run(
            [sys.executable, "-m", "aggserver", "backfill-candles", "--assets", ",".join([ASSET, *batch])],
            env=env,
            check=True,
            capture_output=True,
        )
        server, _ = start_server(env, free_port())
        stack.enter_context(_running(server))
        urllib.request.urlopen(f"{server.url}/refresh/{ASSET}", data=b"", timeout=30).read()  # noqa: S310
        answers = {
            "at (one asset)": f"/prices/{ASSET}/at?timestamp={newest - 1800}",
            f"at ({BATCH} assets)": f"/prices/at?assets={','.join(batch)}&timestamp={newest}",
            "twap 10 min (records)": f"/prices/{ASSET}/twap?window=600",
            "twap 1 h (records)": f"/prices/{ASSET}/twap?window=3600",
            "twap 6 h (1m candles)": f"/prices/{ASSET}/twap?window=21600",
            "change 1 h": f"/prices/{ASSET}/change?period=1h",
        }
        heading = f"{'answer':<24} {'median':>8} {'p90':>8} {'worst':>8} {'429s':>6}"
        print(f"{heading}  (ms, {args.samples} sequential requests)")
        for name, path in answers.items():
            times, refused, _ = timed_gets(server.url + path, args.samples)
            times.sort()
            p90 = times[int(len(times) * 0.9) - 1]
            figures = f"{statistics.median(times):8.1f} {p90:8.1f} {times[-1]:8.1f} {refused:6d}"
            print(f"{name:<24} {figures}", flush=True)


if __name__ == "__main__":
    main()
