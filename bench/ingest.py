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
import asyncio
import json
import os
import signal
import statistics
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass

import aiohttp
import orjson

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from bench.runner import (
    HOT_PATH,
    _running,
    cpu_seconds,
    run_wrk,
    server_env,
    start_ceiling,
    start_server,
    start_writer,
)
from devstack.services import Service, free_port, start_dynamo, start_mockex, start_redis

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


def aggregates(url: str) -> int:
    """Aggregates stored so far by ``url``'s process (every tier, streamed or polled)."""
    refresh = status(url)["refresh"]
    assert isinstance(refresh, dict)
    return sum(outcome.get("ok", 0) for outcome in refresh["outcomes"].values())


def owned_shards(url: str) -> list[int]:
    refresh = status(url)["refresh"]
    assert isinstance(refresh, dict)
    return list(refresh["owned_shards"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    parser.add_argument(
        "--reads",
        type=int,
        default=0,
        help="then this many rounds of wrk hot and uniform GETs at a separate reading server "
        "(core 0), alternately with the ingesting servers stopped (SIGSTOP: the ceiling) and "
        "running (default: no reads)",
    )
    parser.add_argument(
        "--sse",
        type=int,
        default=0,
        help="then this many SSE clients, 10 assets each, at a separate reading server during "
        "ingestion: venue time to arrival (default: none)",
    )
    parser.add_argument(
        "--read-seconds", type=int, default=10, help="seconds per wrk run (default %(default)s)"
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Ingestion:
    """What the ingesting servers did over ``seconds`` of ingestion alone."""

    seconds: float
    tickers: int
    aggregated: int
    server_cpu_seconds: list[float]


def start_ingesting(stack: ExitStack, args: argparse.Namespace) -> tuple[dict[str, str], list[Service]]:
    """The backends, the venue mocks, the history writer and ``args.instances`` ingesting
    servers, all stopped with ``stack``; returns the servers' environment and the servers."""
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
    return env, servers


def wait_flowing(urls: list[str]) -> None:
    """Until every server's streams flow and each owns one shard."""
    deadline = time.monotonic() + 120

    def ready() -> bool:
        shards = [owned_shards(url) for url in urls]
        return all(streamed(url)[1] for url in urls) and all(len(s) == 1 for s in shards)

    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit("streams did not flow (or shards were not shared out) within 2 minutes")
        time.sleep(0.5)


def measure_ingestion(servers: list[Service], seconds: int) -> Ingestion:
    urls = [server.url for server in servers]
    tickers_before = sum(streamed(url)[0] for url in urls)
    aggregates_before = sum(aggregates(url) for url in urls)
    cpu_before = [cpu_seconds(server.process.pid) for server in servers]
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpus = [cpu_seconds(s.process.pid) - before for s, before in zip(servers, cpu_before, strict=True)]
    tickers = sum(streamed(url)[0] for url in urls) - tickers_before
    aggregated = sum(aggregates(url) for url in urls) - aggregates_before
    return Ingestion(elapsed, tickers, aggregated, cpus)


def sweep_ages(url: str, assets: list[str], seconds: int) -> tuple[list[float], int]:
    """A sweep of every asset a second for ``seconds``: each price's age when answered, and the
    number of sweeps."""
    ages: list[float] = []
    sweeps = 0
    sweep_start = time.monotonic()
    while time.monotonic() - sweep_start < seconds:
        began = time.monotonic()
        ages += sweep(url, assets)
        sweeps += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    return ages, sweeps


def report(
    args: argparse.Namespace, asset_count: int, ingestion: Ingestion, ages: list[float], sweeps: int
) -> None:
    elapsed, tickers, cpus = ingestion.seconds, ingestion.tickers, ingestion.server_cpu_seconds
    cpu = sum(cpus)
    print(
        f"venues: {', '.join(VENUES)}, {args.listed:,} symbols each, a push a second; "
        f"{args.instances} instance(s), AGGREGATE_MIN_INTERVAL_SECONDS {args.aggregate_interval}"
    )
    print(
        f"quotes ingested: {tickers / elapsed:,.0f}/s; "
        f"aggregates stored: {ingestion.aggregated / elapsed:,.0f}/s; "
        f"server CPU {cpu / elapsed:.2f} cores"
        + (f" ({', '.join(f'{c / elapsed:.2f}' for c in cpus)})" if len(cpus) > 1 else "")
    )
    print(f"server CPU per 1,000 quotes: {cpu / max(1, tickers) * 1000 * 1000:.1f} ms")
    ages = sorted(ages)
    p50, p99 = statistics.median(ages), ages[int(len(ages) * 0.99) - 1]
    print(
        f"sweeps: {sweeps} of {asset_count:,} assets; age when answered: p50 {p50:.2f} s, "
        f"p99 {p99:.2f} s, max {ages[-1]:.2f} s"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    assets = list(load_symbols(DEFAULT_SYMBOLS_FILE).ordered[: args.listed])
    with ExitStack() as stack:
        env, servers = start_ingesting(stack, args)
        wait_flowing([server.url for server in servers])
        time.sleep(5)  # past the start-up round
        # Ingestion alone: no reads but this measurement's own.
        ingestion = measure_ingestion(servers, args.seconds)
        ages, sweeps = sweep_ages(servers[0].url, assets, args.seconds)
        reads = measure_reads(stack, env, servers, args) if args.reads else []
        if args.sse:
            reader, _ = start_server({**env, "AUTO_REFRESH": "false"}, free_port())
            stack.enter_context(_running(reader))
            reads += asyncio.run(measure_sse(reader.url, assets, args.sse, args.read_seconds))
    report(args, len(assets), ingestion, ages, sweeps)
    for line in reads:
        print(line)


def measure_reads(
    stack: ExitStack, env: dict[str, str], ingesting: list[Service], args: argparse.Namespace
) -> list[str]:
    """wrk hot and uniform at a server that only reads (AUTO_REFRESH off, core 0, wrk on core
    1), alternately with the ingesting servers paused (the ceiling) and ingesting: medians of
    ``args.reads`` rounds, the reader's CPU per request and with no reads at all (what following
    the announcements costs it), and its near-cache hit rate during uniform reads; and the bare
    aiohttp ceiling (same body, same core) in the same moments. On two cores the ingesting
    servers and mocks take CPU from the reader and wrk alike: the ratio to the ceiling measured
    during ingestion, and the CPU per request, separate the design from that contention."""
    reader, _ = start_server({**env, "AUTO_REFRESH": "false"}, free_port())
    stack.enter_context(_running(reader))
    with urllib.request.urlopen(reader.url + HOT_PATH, timeout=10) as response:  # noqa: S310 - loopback
        body_size = len(response.read())
    # The bare aiohttp server with the same body, on the same core: the ceiling in the same shape,
    # measured in the same moments, so that contention for the cores affects both alike.
    bare_server = stack.enter_context(_running(start_ceiling(free_port(), body_size)))
    shapes: dict[str, tuple[str, list[str]]] = {
        "hot": ("report.lua", []),
        "uniform": ("uniform.lua", [str(DEFAULT_SYMBOLS_FILE)]),
    }
    paths = {"hot": HOT_PATH, "uniform": "/"}
    figures: dict[tuple[str, str], list[float]] = {}
    cpu_per_request: dict[tuple[str, str], list[float]] = {}
    idle: dict[str, list[float]] = {"paused": [], "ingesting": []}
    hit_rates: dict[str, list[float]] = {"paused": [], "ingesting": []}
    for _ in range(args.reads):
        for state in ("paused", "ingesting"):
            for server in ingesting:
                os.kill(server.process.pid, signal.SIGSTOP if state == "paused" else signal.SIGCONT)
            time.sleep(3)  # streams resume (or go quiet) before measuring
            # The reader's own CPU with no reads: following the announcements.
            before = cpu_seconds(reader.process.pid)
            time.sleep(5)
            idle[state].append((cpu_seconds(reader.process.pid) - before) / 5)
            bare_run = run_wrk(
                bare_server.url + HOT_PATH,
                connections=100,
                seconds=args.read_seconds,
                script="report.lua",
                args=[],
            )
            figures.setdefault(("ceiling", state), []).append(bare_run.requests_per_s)
            for shape, (script, extra) in shapes.items():
                hits = near_lookups(reader.url)
                result = run_wrk(
                    reader.url + paths[shape],
                    connections=100,
                    seconds=args.read_seconds,
                    script=script,
                    args=extra,
                    watch=reader.process.pid,
                )
                figures.setdefault((shape, state), []).append(result.requests_per_s)
                cpu_per_request.setdefault((shape, state), []).append(result.cpu_us_per_request)
                if shape == "uniform":
                    near, redis = (a - b for a, b in zip(near_lookups(reader.url), hits, strict=True))
                    hit_rates[state].append(near / max(1, near + redis))
    for server in ingesting:
        os.kill(server.process.pid, signal.SIGCONT)
    lines = [
        f"reads at a reading server, medians of {args.reads} rounds of {args.read_seconds} s "
        "(wrk, 100 connections):"
    ]
    bare = {state: statistics.median(figures["ceiling", state]) for state in ("paused", "ingesting")}
    lines.append(
        f"  ceiling  (bare aiohttp, same body and core) {bare['paused']:>8,.0f} req/s paused, "
        f"{bare['ingesting']:>8,.0f} req/s ingesting"
    )
    for shape in shapes:
        paused = statistics.median(figures[shape, "paused"])
        during = statistics.median(figures[shape, "ingesting"])
        cpu_ceiling = statistics.median(cpu_per_request[shape, "paused"])
        cpu_during = statistics.median(cpu_per_request[shape, "ingesting"])
        lines.append(
            f"  {shape:<8} ceiling {paused:>8,.0f} req/s; during ingestion {during:>8,.0f} req/s; "
            f"ratio {during / paused:.2f}; reader CPU {cpu_ceiling:.1f} -> {cpu_during:.1f} µs/request; "
            f"of the ceiling during ingestion {during / bare['ingesting']:.2f} "
            f"(paused {paused / bare['paused']:.2f})"
        )
    lines.append(
        "  reader CPU with no reads (following announcements): "
        f"{statistics.median(idle['paused']):.3f} cores paused, "
        f"{statistics.median(idle['ingesting']):.3f} cores ingesting"
    )
    lines.append(
        "  near-cache hit rate during uniform: "
        f"{statistics.median(hit_rates['paused']):.1%} paused, "
        f"{statistics.median(hit_rates['ingesting']):.1%} ingesting"
    )
    return lines


async def measure_sse(base: str, assets: list[str], clients: int, seconds: float) -> list[str]:
    """``clients`` SSE streams of 10 assets each (spread over ``assets``) for ``seconds``: for every
    price event, its arrival time minus the price's venue time (``last_updated_ms``), which
    includes the venue's push, the aggregation window, the Redis write, the pub/sub hop and the
    fan-out."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)

    async def follow(session: aiohttp.ClientSession, followed: list[str], opened: asyncio.Event) -> None:
        async with session.get(f"{base}/stream", params={"assets": ",".join(followed)}) as response:
            response.raise_for_status()
            opened.set()
            async for line in response.content:
                if line.startswith(b"data:"):
                    price = orjson.loads(line[5:])
                    if "last_updated_ms" in price:
                        latencies.append(time.time() * 1000 - price["last_updated_ms"])

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        opened = [asyncio.Event() for _ in range(clients)]
        step = max(1, len(assets) // (clients * 10))
        tasks = [
            asyncio.create_task(
                follow(session, assets[i * 10 * step : (i + 1) * 10 * step : step], opened[i])
            )
            for i in range(clients)
        ]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(event.wait() for event in opened))
            await asyncio.sleep(2)  # past the opening events
            latencies.clear()
            await asyncio.sleep(seconds)
            received = len(latencies)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(latencies[:received])
    if not ordered:
        return ["SSE: no events with last_updated_ms arrived"]
    return [
        f"SSE, {clients} clients x 10 assets during ingestion: {received / seconds:,.0f} events/s; "
        f"venue time to arrival p50 {statistics.median(ordered):.0f} ms, "
        f"p99 {ordered[int(len(ordered) * 0.99) - 1]:.0f} ms, max {ordered[-1]:.0f} ms"
    ]


def near_lookups(url: str) -> tuple[int, int]:
    """The reader's GET lookups so far answered by its near-cache and by Redis."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    found = dict.fromkeys(("near_hit", "redis_hit", "redis_miss"), 0)
    for line in text.splitlines():
        if line.startswith("aggserver_cache_lookups_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            found[result] = int(float(line.rsplit(" ", 1)[1]))
    return found["near_hit"], found["redis_hit"] + found["redis_miss"]


if __name__ == "__main__":
    main()
