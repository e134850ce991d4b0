"""``python -m bench.ingest``: push ingestion from three venue streams, measured.

Starts redis, dynalite, one history writer and mockex's binance, okx and bybit personalities, each
listing the first ``--listed`` symbols and pushing every one of them every second; then aggserver
(pinned to core 0, ``INGEST=stream``) on them. Once every stream flows it reports:

- over ``--seconds`` with no reads: quotes/s received from the streams and the server's CPU per
  1,000 quotes (the whole process: parsing, the quote book, aggregation, Redis writes);
- then over ``--seconds`` of sweeping every listed asset once a second with batch GETs: the age
  of every answered price at the moment of the answer (from ``last_updated_ms``): p50, p99, max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from contextlib import ExitStack

from aggserver.localstack import free_port, start_dynamo, start_mockex, start_redis
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.symbols import load_symbols
from bench.runner import _running, cpu_seconds, server_env, start_server, start_writer

VENUES = ("binance", "okx", "bybit")


def status(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/status", timeout=10) as response:  # noqa: S310 - loopback
        result: dict[str, object] = json.loads(response.read())
        return result


def streamed(url: str) -> tuple[int, bool]:
    """Tickers received from every stream so far, and whether all of them flow."""
    exchanges = status(url)["exchanges"]
    assert isinstance(exchanges, list)
    streams = [e["stream"] for e in exchanges]
    if any(s is None for s in streams):
        return 0, False
    return sum(s["tickers"] for s in streams), all(s["connected"] and s["tickers"] for s in streams)


def sweep(url: str, assets: list[str]) -> list[float]:
    """One pass over ``assets`` with batch GETs: each price's age in seconds when answered."""
    ages = []
    for start in range(0, len(assets), 1000):
        query = ",".join(assets[start : start + 1000])
        with urllib.request.urlopen(f"{url}/prices?assets={query}", timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        now_ms = time.time() * 1000
        ages += [(now_ms - p.get("last_updated_ms", p["last_updated"] * 1000)) / 1000 for p in body["prices"]]
    return ages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument(
        "--listed", type=int, default=1000, help="symbols each venue lists (default %(default)s)"
    )
    parser.add_argument("--seconds", type=int, default=30, help="measured seconds (default %(default)s)")
    args = parser.parse_args(argv)
    assets = list(load_symbols(DEFAULT_SYMBOLS_FILE).ordered[: args.listed])
    with ExitStack() as stack:
        redis = stack.enter_context(_running(start_redis()))
        dynamo = stack.enter_context(_running(start_dynamo()))
        venues = [
            stack.enter_context(_running(start_mockex(name=v, venue=v, listed=args.listed))) for v in VENUES
        ]
        env = server_env(
            redis.url,
            dynamo.url,
            [],
            EXCHANGES=",".join(f"{v}={s.url}" for v, s in zip(VENUES, venues, strict=True)),
            INGEST="stream",
        )
        stack.enter_context(_running(start_writer(env)))
        server, _ = start_server(env, free_port())
        stack.enter_context(_running(server))
        deadline = time.monotonic() + 120
        while not streamed(server.url)[1]:
            if time.monotonic() > deadline:
                raise SystemExit("streams did not flow within 2 minutes")
            time.sleep(0.5)
        time.sleep(5)  # past the start-up round
        # Ingestion alone: no reads but this measurement's own.
        tickers_before, _ = streamed(server.url)
        cpu_before = cpu_seconds(server.process.pid)
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(server.process.pid) - cpu_before
        tickers = streamed(server.url)[0] - tickers_before
        # Then a sweep of every listed asset a second, each price's age when answered.
        ages: list[float] = []
        sweeps = 0
        sweep_start = time.monotonic()
        while time.monotonic() - sweep_start < args.seconds:
            began = time.monotonic()
            ages += sweep(server.url, assets)
            sweeps += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    ages.sort()
    quotes_per_s = tickers / elapsed
    print(f"venues: {', '.join(VENUES)}, {args.listed:,} symbols each, a push a second")
    print(f"quotes received: {quotes_per_s:,.0f}/s; server CPU {cpu / elapsed:.2f} cores")
    print(f"server CPU per 1,000 quotes: {cpu / max(1, tickers) * 1000 * 1000:.1f} ms")
    p50, p99 = statistics.median(ages), ages[int(len(ages) * 0.99) - 1]
    print(
        f"sweeps: {sweeps} of {len(assets):,} assets; age when answered: p50 {p50:.2f} s, "
        f"p99 {p99:.2f} s, max {ages[-1]:.2f} s"
    )


if __name__ == "__main__":
    main()
