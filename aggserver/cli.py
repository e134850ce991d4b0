"""``aggserver``: ``serve`` runs the server; ``stack`` runs it with every local backing service;
``history-writer`` writes the history outbox into DynamoDB; ``venues`` checks the exchanges."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TextIO

import orjson
import uvloop
from aiohttp import web

from aggserver import __version__
from aggserver.app import create_app
from aggserver.errors import ConfigError
from aggserver.keys import SCHEDULER
from aggserver.localstack import (
    DUMMY_AWS_ENV,
    Service,
    ServiceError,
    die_with_parent,
    free_port,
    port_is_free,
    start_dynamo,
    start_mockex,
    start_redis,
)
from aggserver.rollups import backfill_candles
from aggserver.scheduler import Scheduler
from aggserver.settings import ACCEPT_BACKLOG, Settings
from aggserver.symbols import load_symbols
from aggserver.venue_probe import probe_venues
from aggserver.venues import VENUES
from aggserver.writer_process import serve_writer, writer_env

__all__ = ["main"]

log = logging.getLogger("aggserver")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggserver",
        description="Real-time volume-weighted prices from several exchanges, cached in Redis, "
        "recorded in DynamoDB. Settings come from environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"aggserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server against configured backends")
    stack = commands.add_parser(
        "stack",
        help="run the whole local stack: mock exchanges, redis-server, a DynamoDB-compatible "
        "server (for whatever is not configured) and the server",
    )
    for sub in (serve, stack):
        sub.add_argument("--host", help="listen address (overrides HOST)")
        sub.add_argument("--port", type=int, help="listen port (overrides PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (SO_REUSEPORT); one of them, holding the "
        "refresh lease in Redis, does the refreshing (default %(default)s)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    stack.add_argument(
        "--venues",
        help="run venue-format mock exchanges instead of the three mockex ones: a comma-separated "
        f"list of {', '.join(VENUES)} (sets EXCHANGES)",
    )
    commands.add_parser(
        "history-writer",
        help="write the history outbox (Redis) into DynamoDB until SIGTERM; run any number, "
        "anywhere (the server starts one of its own unless HISTORY_WRITER says otherwise)",
    )
    backfill = commands.add_parser(
        "backfill-candles",
        help="write the candle rollups of history recorded before they existed (or check them): "
        "reads every record of each asset once; safe to rerun, safe beside running writers",
    )
    backfill.add_argument("--assets", help="comma-separated assets (default: every symbol)")
    commands.add_parser(
        "venues",
        help="call each configured exchange (EXCHANGES) once and print what it lists of ours, a "
        "btcusdt quote, the round trip and the rate-limit headroom",
    )
    stack.add_argument(
        "--data-dir",
        default=os.environ.get("AGGSERVER_DATA_DIR", ".aggserver-data"),
        help="where the local Redis (append-only file) and DynamoDB keep their data between runs "
        "(default %(default)s)",
    )
    return parser


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = dict(environ)
    if args.host:
        overrides["HOST"] = args.host
    if args.port is not None:
        overrides["PORT"] = str(args.port)
    return Settings.from_env(overrides)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json); a dozen lines, so no dependency for it."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(fields).decode()


def _setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def _raise_open_files_limit() -> None:
    # Every client, stream and backend connection is a file descriptor; the usual soft limit of
    # 1,024 would refuse connections long before the CPU is busy.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# After shutdown, how long tasks the app did not own (a library's, say) get to finish.
LEFTOVER_TASKS_SECONDS = 5.0


def _run(settings: Settings, *, reuse_port: bool = False, show_progress: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within a bounded time and return."""
    app = create_app(settings)
    log.info("starting: %s", settings.summary())
    _raise_open_files_limit()
    if show_progress:
        app.cleanup_ctx.append(_warm_up_progress)
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_serve(app, settings, reuse_port=reuse_port))
        # web.run_app would wait for every leftover task without limit; a task that swallows
        # its cancellation (seen about once in ten shutdowns) would then hang the process.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            _, stuck = loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_TASKS_SECONDS))
            if stuck:
                log.warning(
                    "exiting with %d tasks that did not stop: %s", len(stuck), [t.get_coro() for t in stuck]
                )
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


async def _serve(app: web.Application, settings: Settings, *, reuse_port: bool) -> None:
    runner = web.AppRunner(
        app,
        # No per-request log line unless asked for: it would cost more than the request.
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=10,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=reuse_port or None,
            backlog=ACCEPT_BACKLOG,
        )
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish (shutdown_timeout), runs the cleanup
        # contexts in reverse: scheduler, refresh path, history flush, pools.
        await runner.cleanup()


async def _warm_up_progress(app: web.Application) -> AsyncIterator[None]:
    """Shows the start-up round filling the cache: a bar on a terminal, a few lines otherwise."""
    task = asyncio.create_task(_report_progress(app[SCHEDULER], sys.stdout))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _report_progress(scheduler: Scheduler, out: TextIO) -> None:
    tty = out.isatty()
    last_line = -1
    while scheduler.catch_up_seconds is None:
        done, total = scheduler.catch_up_progress
        if total:
            if tty:
                filled = 30 * done // total
                out.write(f"\rwarming up [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} assets")
            elif done * 4 // total > last_line:  # 0, 25, 50, 75 %
                last_line = done * 4 // total
                out.write(f"warming up: {done:,}/{total:,} assets\n")
            out.flush()
        await asyncio.sleep(0.2)
    done, total = scheduler.catch_up_progress
    end = "\r" if tty else ""
    out.write(f"{end}warmed up: {total:,} assets priced in {scheduler.catch_up_seconds:.1f} s{' ' * 20}\n")
    out.flush()


def _supervise(args: argparse.Namespace, settings: Settings, workers: int) -> None:
    """Run ``workers`` copies of ``serve`` on one port, and with HISTORY_WRITER=process one history
    writer for all of them; SIGTERM/SIGINT stop them all gracefully (the writer drains last).
    Children get SIGTERM should this process die without a word (SIGKILL): none is left behind."""
    argv = [sys.executable, "-m", "aggserver", "serve", "--reuse-port"]
    argv += ["--host", args.host] if args.host else []
    argv += ["--port", str(args.port)] if args.port is not None else []
    worker_env = None
    writer: subprocess.Popen[bytes] | None = None
    if settings.history_writer == "process":
        worker_env = {**os.environ, "HISTORY_WRITER": "external"}
        writer = subprocess.Popen(
            [sys.executable, "-m", "aggserver", "history-writer"],
            env=writer_env(settings),
            preexec_fn=die_with_parent,
        )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    processes = [subprocess.Popen(argv, env=worker_env, preexec_fn=die_with_parent) for _ in range(workers)]
    restarts: list[float] = []
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving with %d workers (pids %s)", workers, ", ".join(str(p.pid) for p in processes))
    while not stopping:
        for index, process in enumerate(processes):
            code = process.poll()
            if code is not None and not stopping:
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                if len(restarts) > 2 * workers:
                    log.error("workers keep exiting (last code %s): giving up", code)
                    stop(signal.SIGTERM, None)
                    break
                log.error("worker %d exited with %s; starting another", process.pid, code)
                processes[index] = subprocess.Popen(argv, env=worker_env, preexec_fn=die_with_parent)
        if writer is not None and writer.poll() is not None and not stopping:
            log.error("history writer exited with %s; starting another", writer.returncode)
            writer = subprocess.Popen(
                [sys.executable, "-m", "aggserver", "history-writer"],
                env=writer_env(settings),
                preexec_fn=die_with_parent,
            )
        time.sleep(0.5)
    codes = [process.wait() for process in processes]
    if writer is not None:
        # Last: the workers have appended what they held; the writer drains the outbox.
        writer.send_signal(signal.SIGTERM)
        codes.append(writer.wait())
    # A worker still starting when the signal came dies of it before it can handle it: clean.
    sys.exit(0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1)


def _preferred_port(port: int) -> int:
    return port if port_is_free(port) else free_port()


# Where ``stack --venues`` puts each venue's mock when the port is free (beside mockex's 8081-8083).
VENUE_PORTS = {"binance": 8091, "okx": 8092, "bybit": 8093, "kraken": 8094, "coinbase": 8095}


def _venue_list(raw: str | None) -> list[str]:
    venues = [v.strip().lower() for v in (raw or "").split(",") if v.strip()]
    unknown = [v for v in venues if v not in VENUES]
    if unknown:
        raise ConfigError(f"--venues: unknown {', '.join(unknown)} (known: {', '.join(VENUES)})")
    return list(dict.fromkeys(venues))


def _start_stack_services(
    env: dict[str, str], data_dir: Path, services: list[Service], venues: list[str]
) -> None:
    """Start what the environment does not already point at; add its address to ``env``."""
    if "REDIS_URL" not in env:
        # With an append-only file: the history outbox survives a restart of the stack.
        redis = start_redis(_preferred_port(6380), data_dir=data_dir / "redis")
        services.append(redis)
        env["REDIS_URL"] = redis.url
    if not (env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL")):
        dynamo = start_dynamo(_preferred_port(8000), path=data_dir / "dynalite")
        services.append(dynamo)
        env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamo.url
        for name, value in DUMMY_AWS_ENV.items():
            env.setdefault(name, value)
        if dynamo.name == "moto":
            print("note: Node.js >= 20 with dynalite not found; using moto's server (history is not kept)")
    if venues:
        entries = []
        for venue in venues:
            mock = start_mockex(_preferred_port(VENUE_PORTS[venue]), name=venue, venue=venue)
            services.append(mock)
            entries.append(f"{venue}={mock.url}")
        env["EXCHANGES"] = ",".join(entries)
    elif "EXCHANGE_URLS" not in env and "EXCHANGES" not in env:
        urls = []
        for number, port in enumerate((8081, 8082, 8083), start=1):
            exchange = start_mockex(_preferred_port(port), name=f"exchange{number}")
            services.append(exchange)
            urls.append(f"{exchange.url}/mock/ticker")
        env["EXCHANGE_URLS"] = ",".join(urls)


def _print_stack(services: list[Service], settings: Settings) -> None:
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    base = f"http://{shown}:{settings.port}"
    print("\naggserver local stack")
    for service in services:
        print(f"  {service.name:<10} {service.url}  (pid {service.process.pid})")
    print(f"  {'aggserver':<10} {base}")
    print(f"\ntry:\n  curl -X POST {base}/refresh/btcusdt\n  curl {base}/prices/btcusdt")
    print("Ctrl-C stops everything.\n", flush=True)


def _stack(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    services: list[Service] = []
    try:
        _start_stack_services(env, Path(args.data_dir).resolve(), services, _venue_list(args.venues))
        os.environ.update(env)  # botocore reads the credentials from the environment
        settings = _settings(args, env)
        _setup_logging(settings)
        _print_stack(services, settings)
        _run(settings, show_progress=settings.auto_refresh)
    finally:
        for service in reversed(services):
            service.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "history-writer":
            settings = Settings.from_env(os.environ)
            _setup_logging(settings)
            uvloop.run(serve_writer(settings))
        elif args.command == "backfill-candles":
            settings = Settings.from_env(os.environ)
            _setup_logging(settings)
            named = [a.strip().lower() for a in (args.assets or "").split(",") if a.strip()]
            assets = named or list(load_symbols(settings.symbols_file).ordered)
            uvloop.run(backfill_candles(settings, assets, sys.stdout))
        elif args.command == "venues":
            settings = Settings.from_env(os.environ)
            _setup_logging(settings)
            if uvloop.run(probe_venues(settings, sys.stdout)):
                sys.exit(1)
        elif args.command == "serve":
            settings = _settings(args, os.environ)
            _setup_logging(settings)
            if args.workers < 1:
                raise ConfigError("--workers must be 1 or more")
            if args.workers > 1:
                _supervise(args, settings, args.workers)
            else:
                _run(settings, reuse_port=args.reuse_port)
        else:
            _stack(args)
    except (ConfigError, ServiceError) as exc:
        sys.exit(f"aggserver: {exc}")
    except KeyboardInterrupt:
        pass
