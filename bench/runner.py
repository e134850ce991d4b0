"""``python -m bench``: start a real local stack on free ports, load it with wrk, print figures.

The server (and the ceiling server) run pinned to core 0 and wrk to core 1 when the machine has
two cores or more, so the load generator does not steal the server's CPU. Each scenario runs
``--repeat`` times after a warm-up and the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis as redis_sync

from aggserver import __version__
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.symbols import load_symbols
from bench.streams import measure_streams
from devstack.services import (
    DUMMY_AWS_ENV,
    Service,
    free_port,
    local_dynamo_client,
    spawn,
    start_dynamo,
    start_mockex,
    start_redis,
    wait_ready,
)

WRK_DIR = Path(__file__).resolve().parent / "wrk"
HOT_ASSET = "btcusdt"
HOT_PATH = f"/prices/{HOT_ASSET}"
SYMBOL_COUNT = len(load_symbols(DEFAULT_SYMBOLS_FILE))
SUITES = ("core", "batch", "streams", "venues", "abuse")
# The venue-format mocks of the venues suite, each listing every symbol: one all-tickers answer
# of 10,000 instruments per venue and round.
BULK_VENUES = ("binance", "okx", "bybit")
BATCH_SIZES = (1, 10, 100, 1000)
STREAM_ROUNDS = 20


@dataclass(frozen=True)
class Figures:
    scenario: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Server CPU time (user + system, all its processes) per answered request; nan when the
    # server's process was not watched. A saturated pinned server's is 1 / requests/s (and
    # drifts as much); it tells apart cost from capacity where the server is not saturated.
    cpu_us_per_request: float = float("nan")


def _pinned(core: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(core)]
    return []


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it serves


@contextmanager
def _running(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        service.stop()


def start_server(
    env: dict[str, str], port: int, *, workers: int = 1, pinned: bool = True, checkout: Path | None = None
) -> tuple[Service, float]:
    """aggserver with production settings (on core 0 unless ``pinned`` is off); returns it and
    its start-up time. With ``checkout``, the server runs that checkout's code (from its
    directory: ``python -m`` puts the working directory before PYTHONPATH)."""
    started = time.monotonic()
    service = spawn(
        "aggserver",
        [
            *(_pinned(0) if pinned else []),
            sys.executable,
            "-m",
            "aggserver",
            "serve",
            "--workers",
            str(workers),
        ],
        env={
            **env,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            **({"PYTHONPATH": str(checkout)} if checkout else {}),
        },
        url=f"http://127.0.0.1:{port}",
        cwd=checkout,
    )
    wait_ready(service, lambda: _answers(f"{service.url}/health"), timeout=30)
    return service, time.monotonic() - started


def server_env(redis_url: str, dynamo_url: str, exchanges: list[Service], **extra: str) -> dict[str, str]:
    """The environment of an aggserver using these local backends, production settings otherwise."""
    return {
        **os.environ,
        **DUMMY_AWS_ENV,
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamo_url,
        "EXCHANGE_URLS": ",".join(f"{e.url}/mock/ticker" for e in exchanges),
        "LOG_LEVEL": "WARNING",
        # wrk is one client asking tens of thousands of times a second: per-client budgets off
        # (the abuse suite turns them on).
        "CLIENT_BUDGET_PER_SECOND": "0",
        # One history writer for the whole run, on no pinned core (start_writer): a child of the
        # server would inherit the server's core, which a deployment would not do to it.
        "HISTORY_WRITER": "external",
        **extra,
    }


def start_writer(env: dict[str, str]) -> Service:
    """``aggserver history-writer`` for every server of the run (builds before the outbox write
    their history themselves and ignore HISTORY_WRITER)."""
    service = spawn("history-writer", [sys.executable, "-m", "aggserver", "history-writer"], env=env, url="")
    return service


def start_ceiling(port: int, body_size: int) -> Service:
    service = spawn(
        "ceiling",
        [
            *_pinned(0),
            sys.executable,
            "-m",
            "bench.ceiling",
            "--port",
            str(port),
            "--body-size",
            str(body_size),
        ],
        url=f"http://127.0.0.1:{port}",
    )
    return wait_ready(service, lambda: _answers(service.url + HOT_PATH), timeout=30)


def wait_all_cached(redis_url: str, count: int, timeout: float = 300) -> float:
    """Seconds until Redis holds ``count`` prices (the server's start-up catch-up round)."""
    client = redis_sync.Redis.from_url(redis_url)
    started = time.monotonic()
    try:
        # Each price has its per-exchange breakdown beside it (sources:...).
        while (cached := len(client.keys("price:*"))) < count:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {cached} of {count} prices after {timeout} s")
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        client.close()


def wait_history(dynamo_url: str, table: str, count: int, timeout: float = 300) -> float:
    """Seconds until the table holds ``count`` items (the history writer has caught up)."""
    client = local_dynamo_client(dynamo_url)
    started = time.monotonic()
    while True:
        try:
            found = client.scan(TableName=table, Select="COUNT")["Count"]
        except client.exceptions.ResourceNotFoundException:
            found = 0
        if found >= count:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {found} of {count} history records after {timeout} s")
        time.sleep(0.2)


def keyspace(redis_url: str) -> tuple[int, int]:
    """Redis's own (hits, misses) counters of key lookups."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        stats = client.info("stats")
        return int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
    finally:
        client.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its children (a server's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces: the fields after it start past the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    script: str,
    args: list[str],
    threads: int = 1,
    pinned: bool = True,
    watch: int | None = None,
) -> Figures:
    command = [
        *(_pinned(1) if pinned else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "2s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *args,
    ]
    cpu_before = cpu_seconds(watch) if watch else 0.0
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    cpu_used = cpu_seconds(watch) - cpu_before if watch else float("nan")
    match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    raw = json.loads(match.group(1))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"] + raw["status"]
    return Figures(
        scenario="",
        requests_per_s=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
        cpu_us_per_request=cpu_used * 1e6 / max(1, raw["requests"]),
    )


def median_of(scenario: str, runs: list[Figures]) -> Figures:
    return Figures(
        scenario=scenario,
        requests_per_s=statistics.median(r.requests_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=max(r.errors for r in runs),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in runs),
    )


def measure(
    name: str,
    server: Service,
    path: str,
    args: argparse.Namespace,
    script: str = "report.lua",
    extra: list[str] | None = None,
    *,
    connections: int | None = None,
    threads: int = 1,
    pinned: bool = True,
) -> Figures:
    options = {
        "connections": connections or args.connections,
        "script": script,
        "args": extra or [],
        "threads": threads,
        "pinned": pinned,
        "watch": server.process.pid,
    }
    url = server.url + path
    run_wrk(url, seconds=max(2, args.duration // 3), **options)  # type: ignore[arg-type]
    runs = [run_wrk(url, seconds=args.duration, **options) for _ in range(args.repeat)]  # type: ignore[arg-type]
    figures = median_of(name, runs)
    print(
        f"  {name:<10} {figures.requests_per_s:>9,.0f} req/s  p99 {figures.p99_ms:6.2f} ms  "
        f"CPU {figures.cpu_us_per_request:5.1f} µs/request",
        flush=True,
    )
    return figures


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, aggserver {__version__}"


def install_wrk() -> bool:
    """Install wrk from Debian's packages (as root, or through sudo); True when it is there."""
    if shutil.which("apt-get") is None:
        return False
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("bench: wrk is missing; installing it with apt-get", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(
            [*prefix, *command], check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ).returncode:
            return False
    return shutil.which("wrk") is not None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default %(default)s)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per scenario; median (default %(default)s)"
    )
    parser.add_argument("--connections", type=int, default=100, help="wrk connections (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--suite",
        choices=["all", *SUITES, "history-flood"],
        default="all",
        help="core: the GET scenarios and ratios; batch: GET /prices?assets= with 1-1,000 assets; "
        "streams: 1,000 SSE clients; venues: full rounds from all-tickers venue mocks; abuse: hot GETs "
        "during WebSocket and batch floods, limits off and on; history-flood: hot GETs alone and while "
        "history pages and wide candle ranges flood (python -m bench.history_flood, not part of all) "
        "(default %(default)s)",
    )
    parser.add_argument("--stream-clients", type=int, default=1000, help="SSE clients (default %(default)s)")
    parser.add_argument(
        "--venue-listed",
        type=int,
        default=0,
        help="symbols each venue mock of the venues suite lists, from the top (default: all)",
    )
    return parser.parse_args(argv)


def run_batches(server: Service, args: argparse.Namespace) -> list[dict[str, float]]:
    """Batch reads of 1, 10, 100 and 1,000 uniformly drawn assets: requests/s and assets/s."""
    rows = []
    for size in BATCH_SIZES:
        figures = measure(
            f"batch-{size}", server, "/", args, "batch.lua", [str(DEFAULT_SYMBOLS_FILE), str(size)]
        )
        rows.append(
            {
                "assets_per_request": size,
                "requests_per_s": figures.requests_per_s,
                "assets_per_s": figures.requests_per_s * size,
                "p50_ms": figures.p50_ms,
                "p99_ms": figures.p99_ms,
                "errors": figures.errors,
            }
        )
    print("\n| assets per request | req/s | assets/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['assets_per_request']:,} | {row['requests_per_s']:,.0f} | {row['assets_per_s']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
        )
    return rows


@contextmanager
def _flood(kind: str, url: str, seconds: float) -> Iterator[None]:
    """``python -m bench.abuse`` from 127.0.0.2, on wrk's core, for about ``seconds``."""
    process = subprocess.Popen(
        [*_pinned(1), sys.executable, "-m", "bench.abuse", kind, url, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # let it connect and reach its pace
        yield
    finally:
        out, _ = process.communicate(timeout=seconds + 30)
        print(f"  {kind} flood: {out.strip()}", flush=True)


def run_abuse(stack: ExitStack, env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    """Hot GETs alone, during a WebSocket control flood and during a batch flood (both from
    another client), with the limits off and with the defaults. wrk's client stands for a busy
    gateway and is exempt; the floods are not."""
    outcome: dict[str, object] = {}
    flood_seconds = args.duration * (args.repeat + 1) + 5
    for label, extra in (
        ("limits off", {"CLIENT_BUDGET_PER_SECOND": "0", "WS_MESSAGES_PER_SECOND": "1000000000"}),
        ("default limits", {"CLIENT_BUDGET_PER_SECOND": "", "CLIENT_BUDGET_EXEMPT": "127.0.0.1"}),
    ):
        server, _ = start_server({**env, **extra}, free_port())
        stack.enter_context(_running(server))
        alone = measure(f"hot ({label})", server, HOT_PATH, args)
        with _flood("ws", server.url, flood_seconds):
            during_ws = measure(f"hot during ws flood ({label})", server, HOT_PATH, args)
        with _flood("batch", server.url, flood_seconds):
            during_batch = measure(f"hot during batch flood ({label})", server, HOT_PATH, args)
        server.stop()
        outcome[label] = {
            "alone": asdict(alone),
            "ws_flood": asdict(during_ws),
            "batch_flood": asdict(during_batch),
        }
        for name, figures in (("ws flood", during_ws), ("batch flood", during_batch)):
            print(
                f"  {label}, {name}: {figures.requests_per_s / alone.requests_per_s:.2f} of the hot "
                f"throughput, p99 {figures.p99_ms / alone.p99_ms:.1f}x",
                flush=True,
            )
    return outcome


def run_venue_rounds(
    stack: ExitStack, redis_url: str, env: dict[str, str], count: int, args: argparse.Namespace
) -> dict[str, float]:
    """Full rounds from venue-format mocks that list every symbol: the first round on an empty
    cache, the steady bulk rounds after it, and GETs while those rounds run."""
    venues = [
        stack.enter_context(_running(start_mockex(name=venue, venue=venue, listed=0)))
        for venue in BULK_VENUES
    ]
    # A database of its own: the mockex-format server keeps running (and holding its lease) in 0.
    redis_url = redis_url.rsplit("/", 1)[0] + "/1"
    redis_sync.Redis.from_url(redis_url).flushdb()
    exchanges = ",".join(f"{venue}={mock.url}" for venue, mock in zip(BULK_VENUES, venues, strict=True))
    server, _ = start_server(
        {**env, "REDIS_URL": redis_url, "EXCHANGES": exchanges, "PRICES_TABLE": "prices_venues"}, free_port()
    )
    stack.enter_context(_running(server))
    count = args.venue_listed or count
    first_round_s = wait_all_cached(redis_url, count)
    during = measure("during-venue-rounds", server, "/", args, "uniform.lua", [str(DEFAULT_SYMBOLS_FILE)])
    with urllib.request.urlopen(f"{server.url}/status") as response:  # noqa: S310
        steady_round_s = float(json.loads(response.read())["refresh"]["round_seconds"]["bulk"])
    server.stop()
    for venue in venues:
        venue.stop()
    print(
        f"venues ({', '.join(BULK_VENUES)}, {count:,} symbols each): first full round {first_round_s:.1f} s, "
        f"steady bulk round {steady_round_s:.2f} s; GETs meanwhile {during.requests_per_s:,.0f} req/s, "
        f"p99 {during.p99_ms:.2f} ms",
        flush=True,
    )
    return {
        "first_round_seconds": first_round_s,
        "steady_round_seconds": steady_round_s,
        "get_requests_per_s": during.requests_per_s,
        "get_p99_ms": during.p99_ms,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.suite == "history-flood":
        from bench import history_flood  # it imports this module

        options = ["--duration", str(args.duration), "--repeat", str(args.repeat)]
        history_flood.main([*options, "--connections", str(args.connections)])
        return
    if shutil.which("wrk") is None and not install_wrk():
        sys.exit("bench: wrk is not installed and apt-get could not install it; nothing measured")
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE)
    suites = SUITES if args.suite == "all" else (args.suite,)
    uniform = ["uniform.lua", [str(DEFAULT_SYMBOLS_FILE)]]
    print(f"machine: {machine()}", flush=True)
    print("per-client request budgets: off for the throughput scenarios (the abuse suite turns them on)\n")
    results: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    scenarios: list[Figures] = []

    def run_server(env: dict[str, str], **options: Any) -> Service:
        server, _ = start_server(env, free_port(), **options)
        return stack.enter_context(_running(server))

    with ExitStack() as stack:
        redis = stack.enter_context(_running(start_redis()))
        dynamo = stack.enter_context(_running(start_dynamo()))
        exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
        env = server_env(redis.url, dynamo.url, exchanges)
        stack.enter_context(_running(start_writer(env)))
        server, startup_s = start_server(env, free_port())
        stack.enter_context(_running(server))
        print(f"start-up to ready: {startup_s:.2f} s", flush=True)
        bulk_round_s = wait_all_cached(redis.url, len(symbols))
        print(f"first full round of {len(symbols)} assets, bulk requests: {bulk_round_s:.1f} s", flush=True)
        history_s = bulk_round_s + wait_history(dynamo.url, "prices", len(symbols))
        history_rate = len(symbols) / history_s
        print(f"history: {len(symbols)} records in DynamoDB after {history_s:.1f} s ({history_rate:,.0f}/s)")
        rss = rss_mb(server.process.pid)
        print(f"server RSS with {len(symbols)} assets cached: {rss:.0f} MB\n", flush=True)
        with urllib.request.urlopen(server.url + HOT_PATH) as response:  # noqa: S310
            body_size = len(response.read())

        if "batch" in suites:
            results["batches"] = run_batches(server, args)
        if "streams" in suites:
            streamed = measure_streams(
                server.url,
                symbols.ordered[5000],
                list(symbols.ordered[:20]),
                clients=args.stream_clients,
                rounds=STREAM_ROUNDS,
                rss=lambda: rss_mb(server.process.pid),
            )
            print(
                f"\nstreams: {streamed.clients:,} SSE clients, {streamed.deliveries:,} deliveries "
                f"({streamed.missed} missed): refresh-to-client p50 {streamed.p50_ms:.1f} ms, "
                f"p99 {streamed.p99_ms:.1f} ms (the refresh itself p50 {streamed.refresh_p50_ms:.1f} ms); "
                f"server RSS {streamed.server_rss_mb:.0f} MB",
                flush=True,
            )
            results["streams"] = asdict(streamed)
        if "abuse" in suites:
            results["abuse"] = run_abuse(stack, env, args)
        if "venues" in suites:
            # The same GETs against the mockex-format server first, for the ratio.
            baseline = measure("uniform-before-venues", server, "/", args, *uniform)  # type: ignore[arg-type]
            venue_figures = run_venue_rounds(stack, redis.url, env, len(symbols), args)
            venue_figures["uniform_p99_ms"] = baseline.p99_ms
            venue_figures["uniform_requests_per_s"] = baseline.requests_per_s
            results["venues"] = venue_figures
        if "core" not in suites:
            server.stop()
        else:
            scenarios.append(measure("hot", server, HOT_PATH, args))
            hits_before, misses_before = keyspace(redis.url)
            scenarios.append(measure("uniform", server, "/", args, *uniform))  # type: ignore[arg-type]
            hits, misses = (
                a - b for a, b in zip(keyspace(redis.url), (hits_before, misses_before), strict=True)
            )
            hit_rate = hits / max(1, hits + misses)
            print(f"  Redis hit rate during uniform (keyspace counters): {hit_rate:.2%}", flush=True)
            scenarios.append(measure("mixed", server, "/", args, "mixed.lua", [str(DEFAULT_SYMBOLS_FILE)]))
            server.stop()

            # The ceiling is measured here and again at the end: a shared machine drifts.
            ceiling_service = stack.enter_context(_running(start_ceiling(free_port(), body_size)))
            ceilings = [measure("ceiling", ceiling_service, HOT_PATH, args)]

            # Every GET an MGET: the same Redis read by a server without the near-cache.
            direct = run_server({**env, "NEAR_CACHE_SECONDS": "0"})
            scenarios.append(measure("hot-direct", direct, HOT_PATH, args))
            scenarios.append(measure("uniform-direct", direct, "/", args, *uniform))  # type: ignore[arg-type]
            direct.stop()

            # What request metrics cost: the hot scenario with them off.
            bare = run_server({**env, "REQUEST_METRICS": "false"})
            scenarios.append(measure("hot-no-metrics", bare, HOT_PATH, args))
            bare.stop()

            # Serving while every asset is refreshed every 10 s (1,000 assets a second).
            busy = run_server({**env, "MEDIUM_INTERVAL_SECONDS": "10", "COLD_INTERVAL_SECONDS": "10"})
            scenarios.append(measure("during-refresh", busy, "/", args, *uniform))  # type: ignore[arg-type]
            busy.stop()

            # Unpinned, both cores shared with wrk: one worker, two workers, and 1000 connections.
            one = run_server(env, pinned=False)
            scenarios.append(measure("1-worker", one, HOT_PATH, args, threads=2, pinned=False))
            one.stop()
            two = run_server(env, workers=2, pinned=False)
            scenarios.append(measure("2-workers", two, HOT_PATH, args, threads=2, pinned=False))
            scenarios.append(
                measure(
                    "thousand",
                    two,
                    HOT_PATH,
                    args,
                    connections=1000,
                    threads=2,
                    pinned=False,
                )
            )
            two.stop()

            # The same round with one request per asset and exchange, on an empty cache and table.
            redis_sync.Redis.from_url(redis.url).flushdb()
            per_symbol = run_server({**env, "EXCHANGE_BULK": "false", "PRICES_TABLE": "prices_per_symbol"})
            per_symbol_round_s = wait_all_cached(redis.url, len(symbols))
            print(f"first full round, one request per asset: {per_symbol_round_s:.1f} s", flush=True)
            per_symbol.stop()

            ceilings.append(measure("ceiling", ceiling_service, HOT_PATH, args))
            # The bare server under the thousand scenario's load: the tail that is not ours.
            scenarios.append(
                measure(
                    "ceiling-thousand",
                    ceiling_service,
                    HOT_PATH,
                    args,
                    connections=1000,
                    threads=2,
                    pinned=False,
                )
            )
            ceiling = median_of("ceiling", ceilings)
            scenarios.append(ceiling)

    if "core" in suites:
        print(
            "\n| scenario | req/s | p50 ms | p99 ms | errors | vs ceiling | CPU µs/request | "
            "vs ceiling by CPU |\n|---|---|---|---|---|---|---|---|"
        )
        for figures in scenarios:
            ratio = figures.requests_per_s / ceiling.requests_per_s
            cpu_ratio = ceiling.cpu_us_per_request / figures.cpu_us_per_request
            print(
                f"| {figures.scenario} | {figures.requests_per_s:,.0f} | {figures.p50_ms:.2f} | "
                f"{figures.p99_ms:.2f} | {figures.errors} | {ratio:.2f} | "
                f"{figures.cpu_us_per_request:.1f} | {cpu_ratio:.2f} |"
            )
        by_name = {f.scenario: f for f in scenarios}
        ratios = {
            "hot / ceiling": by_name["hot"].requests_per_s / ceiling.requests_per_s,
            "hot / ceiling by CPU per request": ceiling.cpu_us_per_request
            / by_name["hot"].cpu_us_per_request,
            "hot p99 / ceiling p99": by_name["hot"].p99_ms / ceiling.p99_ms,
            "uniform / hot": by_name["uniform"].requests_per_s / by_name["hot"].requests_per_s,
            "uniform-direct / ceiling": by_name["uniform-direct"].requests_per_s / ceiling.requests_per_s,
            "uniform-direct / ceiling by CPU per request": ceiling.cpu_us_per_request
            / by_name["uniform-direct"].cpu_us_per_request,
            "during-refresh p99 / uniform p99": by_name["during-refresh"].p99_ms / by_name["uniform"].p99_ms,
            "metrics overhead (1 - hot / hot-no-metrics)": 1
            - by_name["hot"].requests_per_s / by_name["hot-no-metrics"].requests_per_s,
            "2-workers / 1-worker": by_name["2-workers"].requests_per_s / by_name["1-worker"].requests_per_s,
        }
        print()
        for name, value in ratios.items():
            print(f"{name}: {value:.2f}")
        print(
            f"full round bulk {bulk_round_s:.1f} s, per-symbol {per_symbol_round_s:.1f} s; "
            f"RSS {rss:.0f} MB; start-up {startup_s:.2f} s; history {history_rate:,.0f} records/s; "
            f"Redis hit rate {hit_rate:.2%}"
        )
        results.update(
            scenarios=[asdict(f) for f in scenarios],
            ratios=ratios,
            startup_seconds=startup_s,
            full_round_bulk_seconds=bulk_round_s,
            full_round_per_symbol_seconds=per_symbol_round_s,
            uniform_hit_rate=hit_rate,
            history_records_per_second=history_rate,
            rss_mb=rss,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
