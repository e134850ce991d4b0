"""``python -m bench.ingest``: push ingestion from three venue streams, measured.

Starts redis, dynalite, one history writer and mockex's binance, okx and bybit personalities, each
listing the first ``--listed`` symbols and pushing every one of them every second; then aggserver
(pinned to core 0, ``INGEST=stream``) on them. Once every stream flows it reports:

- over ``--seconds`` with no reads: quotes/s received from the streams, aggregates stored a second,
  and the server's CPU per 1,000 quotes (the whole process: parsing, the quote book, aggregation,
  Redis writes); with ``--instances N``, N servers share the work as REFRESH_SHARDS=N shards;
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
    """Tickers of this server's assets received from every stream so far, and whether all of
    them flow."""
    exchanges = status(url)["exchanges"]
    assert isinstance(exchanges, list)
    streams = [e["stream"] for e in exchanges]
    if any(s is None for s in streams):
        return 0, False
    return sum(s["kept"] for s in streams), all(s["connected"] and s["kept"] for s in streams)


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


def aggregates(url: str) -> int:
    """Aggregates stored so far by ``url``'s process (every tier, streamed or polled)."""
    refresh = status(url)["refresh"]
    assert isinstance(refresh, dict)
    return sum(outcome.get("ok", 0) for outcome in refresh["outcomes"].values())


def owned_shards(url: str) -> list[int]:
    refresh = status(url)["refresh"]
    assert isinstance(refresh, dict)
    return list(refresh["owned_shards"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument(
        "--listed", type=int, default=1000, help="symbols each venue lists (default %(default)s)"
    )
    parser.add_argument("--seconds", type=int, default=30, help="measured seconds (default %(default)s)")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="servers sharing the work (REFRESH_SHARDS = this; all on core 0) (default %(default)s)",
    )
    parser.add_argument(
        "--aggregate-interval",
        default="0.25",
        help="AGGREGATE_MIN_INTERVAL_SECONDS for the servers (default %(default)s)",
    )
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
            REFRESH_SHARDS=str(args.instances),
            AGGREGATE_MIN_INTERVAL_SECONDS=args.aggregate_interval,
        )
        stack.enter_context(_running(start_writer(env)))
        servers = []
        for _ in range(args.instances):
            server, _ = start_server(env, free_port())
            servers.append(stack.enter_context(_running(server)))
        urls = [server.url for server in servers]
        deadline = time.monotonic() + 120

        def ready() -> bool:
            shards = [owned_shards(url) for url in urls]
            return all(streamed(url)[1] for url in urls) and all(len(s) == 1 for s in shards)

        while not ready():
            if time.monotonic() > deadline:
                raise SystemExit("streams did not flow (or shards were not shared out) within 2 minutes")
            time.sleep(0.5)
        time.sleep(5)  # past the start-up round
        # Ingestion alone: no reads but this measurement's own.
        tickers_before = sum(streamed(url)[0] for url in urls)
        aggregates_before = sum(aggregates(url) for url in urls)
        cpu_before = [cpu_seconds(server.process.pid) for server in servers]
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        cpus = [cpu_seconds(s.process.pid) - before for s, before in zip(servers, cpu_before, strict=True)]
        tickers = sum(streamed(url)[0] for url in urls) - tickers_before
        aggregated = sum(aggregates(url) for url in urls) - aggregates_before
        # Then a sweep of every listed asset a second (through the first server), each price's
        # age when answered.
        ages: list[float] = []
        sweeps = 0
        sweep_start = time.monotonic()
        while time.monotonic() - sweep_start < args.seconds:
            began = time.monotonic()
            ages += sweep(urls[0], assets)
            sweeps += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    ages.sort()
    cpu = sum(cpus)
    print(
        f"venues: {', '.join(VENUES)}, {args.listed:,} symbols each, a push a second; "
        f"{args.instances} instance(s), AGGREGATE_MIN_INTERVAL_SECONDS {args.aggregate_interval}"
    )
    print(
        f"quotes ingested: {tickers / elapsed:,.0f}/s; aggregates stored: {aggregated / elapsed:,.0f}/s; "
        f"server CPU {cpu / elapsed:.2f} cores"
        + (f" ({', '.join(f'{c / elapsed:.2f}' for c in cpus)})" if len(cpus) > 1 else "")
    )
    print(f"server CPU per 1,000 quotes: {cpu / max(1, tickers) * 1000 * 1000:.1f} ms")
    p50, p99 = statistics.median(ages), ages[int(len(ages) * 0.99) - 1]
    print(
        f"sweeps: {sweeps} of {len(assets):,} assets; age when answered: p50 {p50:.2f} s, "
        f"p99 {p99:.2f} s, max {ages[-1]:.2f} s"
    )


if __name__ == "__main__":
    main()
