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
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import redis as redis_sync

from aggserver import __version__
from aggserver.domain.symbols import SymbolSet, load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE
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


# The environment every benchmark server gets over os.environ unless its caller says otherwise.
BENCHMARK_PRESET = {
    **DUMMY_AWS_ENV,
    "LOG_LEVEL": "WARNING",
    # wrk is one client asking tens of thousands of times a second: per-client budgets off
    # (the abuse suite turns them on).
    "CLIENT_BUDGET_PER_SECOND": "0",
    # One history writer for the whole run, on no pinned core (start_writer): a child of the
    # server would inherit the server's core, which a deployment would not do to it.
    "HISTORY_WRITER": "external",
}


def server_env(
    redis_url: str,
    dynamo_url: str,
    exchanges: list[Service],
    preset: Mapping[str, str] = BENCHMARK_PRESET,
    /,
    **extra: str,
) -> dict[str, str]:
    """The environment of an aggserver using these local backends, ``preset`` under ``extra``
    (tests.support.server_env passes no preset and the test's settings as ``extra``). Positional
    parameters only: every keyword is an environment variable, even one named ``preset``."""
    return {
        **os.environ,
        **preset,
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamo_url,
        "EXCHANGE_URLS": ",".join(f"{e.url}/mock/ticker" for e in exchanges),
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
        "streams: 1,000 SSE clients; venues: a realistic universe from five venue mocks, with and "
        "without -usd prices; abuse: hot GETs "
        "during WebSocket and batch floods, limits off and on; history-flood: hot GETs alone and while "
        "history pages and wide candle ranges flood (python -m bench.history_flood, not part of all) "
        "(default %(default)s)",
    )
    parser.add_argument("--stream-clients", type=int, default=1000, help="SSE clients (default %(default)s)")
    parser.add_argument(
        "--venue-pairs",
        type=int,
        default=1_500,
        help="pairs each of the venues suite's five mocks lists, a realistic universe (default %(default)s)",
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


@dataclass(frozen=True)
class Load:
    """One wrk scenario: its name among the figures, what it asks for and how hard."""

    name: str
    path: str = HOT_PATH
    script: str = "report.lua"
    script_args: tuple[str, ...] = ()
    connections: int | None = None
    threads: int = 1
    pinned: bool = True

    def measure_on(self, server: Service, args: argparse.Namespace) -> Figures:
        return measure(
            self.name,
            server,
            self.path,
            args,
            self.script,
            list(self.script_args),
            connections=self.connections,
            threads=self.threads,
            pinned=self.pinned,
        )


def _uniform(name: str) -> Load:
    return Load(name, "/", "uniform.lua", (str(DEFAULT_SYMBOLS_FILE),))


HOT = Load("hot")
UNIFORM = _uniform("uniform")
MIXED = Load("mixed", "/", "mixed.lua", (str(DEFAULT_SYMBOLS_FILE),))
CEILING = Load("ceiling")
# The bare server under the thousand scenario's load: the tail that is not ours.
CEILING_THOUSAND = Load("ceiling-thousand", connections=1000, threads=2, pinned=False)


@dataclass(frozen=True)
class Variant:
    """A server of its own for some core scenarios: the run's environment with ``env`` over it."""

    env: Mapping[str, str]
    loads: tuple[Load, ...]
    workers: int = 1
    pinned: bool = True
    # With DATA_PLANE=process: the core its ``aggserver ingest`` child is moved to (it inherits
    # the server's), so the serving process has core 0 to itself as it would on a bigger box.
    data_plane_core: int | None = None


DURING_REFRESH = {"MEDIUM_INTERVAL_SECONDS": "10", "COLD_INTERVAL_SECONDS": "10"}
VARIANTS = (
    # Every GET an MGET: the same Redis read by a server without the near-cache.
    Variant({"NEAR_CACHE_SECONDS": "0"}, (Load("hot-direct"), _uniform("uniform-direct"))),
    # What request metrics cost: the hot scenario with them off.
    Variant({"REQUEST_METRICS": "false"}, (Load("hot-no-metrics"),)),
    # Serving while every asset is refreshed every 10 s (1,000 assets a second), the refresh work
    # on the serving loop, then in the data plane's own process on wrk's core.
    Variant(DURING_REFRESH, (_uniform("during-refresh"),)),
    Variant(
        {**DURING_REFRESH, "DATA_PLANE": "process"}, (_uniform("during-refresh-apart"),), data_plane_core=1
    ),
    # Unpinned, both cores shared with wrk: one worker, two workers, and 1000 connections.
    Variant({}, (Load("1-worker", threads=2, pinned=False),), pinned=False),
    Variant(
        {},
        (
            Load("2-workers", threads=2, pinned=False),
            Load("thousand", connections=1000, threads=2, pinned=False),
        ),
        workers=2,
        pinned=False,
    ),
)


@dataclass(frozen=True)
class Startup:
    """The main server's start-up figures, printed as they come and summed up by core."""

    seconds: float
    bulk_round_seconds: float
    history_records_per_second: float
    rss_mb: float
    hot_body_size: int


@dataclass(frozen=True)
class Bench:
    """What every suite runs against: the local backends, their environment and the main server."""

    args: argparse.Namespace
    stack: ExitStack
    symbols: SymbolSet
    redis_url: str
    env: dict[str, str]
    server: Service
    startup: Startup

    def serve(self, env: dict[str, str], *, workers: int = 1, pinned: bool = True) -> Service:
        """Another aggserver, stopped with the stack if its suite does not stop it sooner."""
        server, _ = start_server(env, free_port(), workers=workers, pinned=pinned)
        return self.stack.enter_context(_running(server))


def _startup_figures(
    server: Service, startup_s: float, redis_url: str, dynamo_url: str, count: int
) -> Startup:
    print(f"start-up to ready: {startup_s:.2f} s", flush=True)
    bulk_round_s = wait_all_cached(redis_url, count)
    print(f"first full round of {count} assets, bulk requests: {bulk_round_s:.1f} s", flush=True)
    history_s = bulk_round_s + wait_history(dynamo_url, "prices", count)
    history_rate = count / history_s
    print(f"history: {count} records in DynamoDB after {history_s:.1f} s ({history_rate:,.0f}/s)")
    rss = rss_mb(server.process.pid)
    print(f"server RSS with {count} assets cached: {rss:.0f} MB\n", flush=True)
    with urllib.request.urlopen(server.url + HOT_PATH) as response:  # noqa: S310
        body_size = len(response.read())
    return Startup(startup_s, bulk_round_s, history_rate, rss, body_size)


def open_bench(stack: ExitStack, args: argparse.Namespace) -> Bench:
    """Redis, DynamoDB, three mock exchanges, the history writer and the main server, all
    stopped with ``stack``; returns once the server has priced every asset and written its history."""
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE)
    redis = stack.enter_context(_running(start_redis()))
    dynamo = stack.enter_context(_running(start_dynamo()))
    exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
    env = server_env(redis.url, dynamo.url, exchanges)
    stack.enter_context(_running(start_writer(env)))
    server, startup_s = start_server(env, free_port())
    stack.enter_context(_running(server))
    startup = _startup_figures(server, startup_s, redis.url, dynamo.url, len(symbols))
    return Bench(args, stack, symbols, redis.url, env, server, startup)


def _batch_suite(bench: Bench) -> dict[str, object]:
    return {"batches": run_batches(bench.server, bench.args)}


def _streams_suite(bench: Bench) -> dict[str, object]:
    server = bench.server
    streamed = measure_streams(
        server.url,
        bench.symbols.ordered[5000],
        list(bench.symbols.ordered[:20]),
        clients=bench.args.stream_clients,
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
    return {"streams": asdict(streamed)}


def _abuse_suite(bench: Bench) -> dict[str, object]:
    return {"abuse": run_abuse(bench.stack, bench.env, bench.args)}


def _venues_suite(bench: Bench) -> dict[str, object]:
    # Imported here: bench.universe builds on this module.
    from bench.universe import run_universe_rounds

    return {"venues": run_universe_rounds(bench.stack, bench.redis_url, bench.env, bench.args)}


def _main_server_scenarios(bench: Bench) -> tuple[list[Figures], float]:
    """hot, uniform and mixed at the main server, which then stops to leave its core to the
    others; also Redis's hit rate during uniform."""
    scenarios = [HOT.measure_on(bench.server, bench.args)]
    before = keyspace(bench.redis_url)
    scenarios.append(UNIFORM.measure_on(bench.server, bench.args))
    hits, misses = (a - b for a, b in zip(keyspace(bench.redis_url), before, strict=True))
    hit_rate = hits / max(1, hits + misses)
    print(f"  Redis hit rate during uniform (keyspace counters): {hit_rate:.2%}", flush=True)
    scenarios.append(MIXED.measure_on(bench.server, bench.args))
    bench.server.stop()
    return scenarios, hit_rate


def _measure_variant(bench: Bench, variant: Variant) -> list[Figures]:
    server = bench.serve({**bench.env, **variant.env}, workers=variant.workers, pinned=variant.pinned)
    if variant.data_plane_core is not None:
        move_children(server.process.pid, "ingest", variant.data_plane_core)
    figures = [load.measure_on(server, bench.args) for load in variant.loads]
    server.stop()
    return figures


def move_children(parent: int, command: str, core: int, timeout: float = 30) -> None:
    """Pin the children of ``parent`` running ``aggserver <command>`` to ``core`` (once started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        moved = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = stat.read_text().rsplit(")", 1)[1].split()[1]
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError):
                continue
            if ppid == str(parent) and command.encode() in cmdline:
                os.sched_setaffinity(int(stat.parent.name), {core})
                moved += 1
        if moved:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {command} child of {parent} within {timeout} s")


def _per_symbol_round(bench: Bench) -> float:
    """The same round with one request per asset and exchange, on an empty cache and table."""
    redis_sync.Redis.from_url(bench.redis_url).flushdb()
    per_symbol = bench.serve({**bench.env, "EXCHANGE_BULK": "false", "PRICES_TABLE": "prices_per_symbol"})
    seconds = wait_all_cached(bench.redis_url, len(bench.symbols))
    print(f"first full round, one request per asset: {seconds:.1f} s", flush=True)
    per_symbol.stop()
    return seconds


def core_ratios(scenarios: list[Figures], ceiling: Figures) -> dict[str, float]:
    by_name = {f.scenario: f for f in scenarios}
    return {
        "hot / ceiling": by_name["hot"].requests_per_s / ceiling.requests_per_s,
        "hot / ceiling by CPU per request": ceiling.cpu_us_per_request / by_name["hot"].cpu_us_per_request,
        "hot p99 / ceiling p99": by_name["hot"].p99_ms / ceiling.p99_ms,
        "uniform / hot": by_name["uniform"].requests_per_s / by_name["hot"].requests_per_s,
        "uniform-direct / ceiling": by_name["uniform-direct"].requests_per_s / ceiling.requests_per_s,
        "uniform-direct / ceiling by CPU per request": ceiling.cpu_us_per_request
        / by_name["uniform-direct"].cpu_us_per_request,
        "during-refresh p99 / uniform p99": by_name["during-refresh"].p99_ms / by_name["uniform"].p99_ms,
        "during-refresh-apart p99 / uniform p99": by_name["during-refresh-apart"].p99_ms
        / by_name["uniform"].p99_ms,
        "metrics overhead (1 - hot / hot-no-metrics)": 1
        - by_name["hot"].requests_per_s / by_name["hot-no-metrics"].requests_per_s,
        "2-workers / 1-worker": by_name["2-workers"].requests_per_s / by_name["1-worker"].requests_per_s,
    }


def _print_scenario_table(scenarios: list[Figures], ceiling: Figures) -> None:
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


def _core_suite(bench: Bench) -> dict[str, object]:
    scenarios, hit_rate = _main_server_scenarios(bench)
    # The ceiling is measured here and again at the end: a shared machine drifts.
    ceiling_service = bench.stack.enter_context(
        _running(start_ceiling(free_port(), bench.startup.hot_body_size))
    )
    ceilings = [CEILING.measure_on(ceiling_service, bench.args)]
    for variant in VARIANTS:
        scenarios += _measure_variant(bench, variant)
    per_symbol_round_s = _per_symbol_round(bench)
    ceilings.append(CEILING.measure_on(ceiling_service, bench.args))
    scenarios.append(CEILING_THOUSAND.measure_on(ceiling_service, bench.args))
    ceiling = median_of("ceiling", ceilings)
    scenarios.append(ceiling)

    _print_scenario_table(scenarios, ceiling)
    ratios = core_ratios(scenarios, ceiling)
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    startup = bench.startup
    print(
        f"full round bulk {startup.bulk_round_seconds:.1f} s, per-symbol {per_symbol_round_s:.1f} s; "
        f"RSS {startup.rss_mb:.0f} MB; start-up {startup.seconds:.2f} s; "
        f"history {startup.history_records_per_second:,.0f} records/s; Redis hit rate {hit_rate:.2%}"
    )
    return {
        "scenarios": [asdict(f) for f in scenarios],
        "ratios": ratios,
        "startup_seconds": startup.seconds,
        "full_round_bulk_seconds": startup.bulk_round_seconds,
        "full_round_per_symbol_seconds": per_symbol_round_s,
        "uniform_hit_rate": hit_rate,
        "history_records_per_second": startup.history_records_per_second,
        "rss_mb": startup.rss_mb,
    }


# In the order they run: core last, as it stops the main server the others measure.
SUITE_RUNS: dict[str, Callable[[Bench], dict[str, object]]] = {
    "batch": _batch_suite,
    "streams": _streams_suite,
    "abuse": _abuse_suite,
    "venues": _venues_suite,
    "core": _core_suite,
}


def _run_history_flood(args: argparse.Namespace) -> None:
    from bench import history_flood  # it imports this module

    options = ["--duration", str(args.duration), "--repeat", str(args.repeat)]
    history_flood.main([*options, "--connections", str(args.connections)])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.suite == "history-flood":
        _run_history_flood(args)
        return
    if shutil.which("wrk") is None and not install_wrk():
        sys.exit("bench: wrk is not installed and apt-get could not install it; nothing measured")
    chosen = SUITES if args.suite == "all" else (args.suite,)
    print(f"machine: {machine()}", flush=True)
    print("per-client request budgets: off for the throughput scenarios (the abuse suite turns them on)\n")
    results: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    with ExitStack() as stack:
        bench = open_bench(stack, args)
        for name, run in SUITE_RUNS.items():
            if name in chosen:
                results.update(run(bench))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
