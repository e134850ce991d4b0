"""``python -m bench.refresh_load BEFORE AFTER``: what refresh rounds cost GETs, two builds.

For each build (a checkout directory, ``git worktree add /tmp/before <commit>``) and round, in
alternating order: a server with the default tiers ("idle": about 33 assets refreshed a second)
and one refreshing every asset every 10 s ("busy": 1,000 a second, each with its history
record), each answering the ``uniform`` wrk load (100 connections, 10,000 symbols). Prints per
run and as medians the GET p99 of each, their ratio, and the serving process's CPU per request
while busy (the history writer of a build with the outbox is a process of its own, unpinned;
an older build writes history on its serving loop).
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack
from pathlib import Path

from aggserver.settings import DEFAULT_SYMBOLS_FILE
from bench.runner import (
    SYMBOL_COUNT,
    Figures,
    _running,
    run_wrk,
    server_env,
    start_server,
    start_writer,
    wait_all_cached,
)
from devstack.services import free_port, start_dynamo, start_mockex, start_redis

BUSY = {"MEDIUM_INTERVAL_SECONDS": "10", "COLD_INTERVAL_SECONDS": "10"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh_load", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="runs per build and load (default %(default)s)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default %(default)s)")
    args = parser.parse_args(argv)
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[tuple[str, str], list[Figures]] = {(b, s): [] for b in builds for s in ("idle", "busy")}
    with ExitStack() as stack:
        dynamo = stack.enter_context(_running(start_dynamo()))
        exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
        order = list(builds)
        for round_ in range(args.rounds):
            for name in order:
                for load, extra_env in (("idle", {}), ("busy", BUSY)):
                    with ExitStack() as run:
                        redis = run.enter_context(_running(start_redis()))
                        env = server_env(
                            redis.url,
                            dynamo.url,
                            exchanges,
                            PRICES_TABLE=f"{name}_{load}_{round_}",
                            **extra_env,
                        )
                        run.enter_context(_running(start_writer(env)))
                        server = run.enter_context(
                            _running(start_server(env, free_port(), checkout=builds[name])[0])
                        )
                        wait_all_cached(redis.url, SYMBOL_COUNT)
                        figures = run_wrk(
                            f"{server.url}/",
                            connections=100,
                            seconds=args.duration,
                            script="uniform.lua",
                            args=[str(DEFAULT_SYMBOLS_FILE)],
                            watch=server.process.pid,
                        )
                    results[name, load].append(figures)
                    print(
                        f"{name:<7} {load:<5} {figures.requests_per_s:>9,.0f} req/s  "
                        f"p99 {figures.p99_ms:6.2f} ms  CPU {figures.cpu_us_per_request:5.1f} µs/request",
                        flush=True,
                    )
            order.reverse()
    print(
        "\n| build | idle p99 ms (runs) | busy p99 ms (runs) | busy / idle p99 (medians) | "
        "idle req/s | busy req/s | busy CPU µs/request |\n|---|---|---|---|---|---|---|"
    )
    for name in builds:
        idle, busy = results[name, "idle"], results[name, "busy"]
        idle_p99 = statistics.median(r.p99_ms for r in idle)
        busy_p99 = statistics.median(r.p99_ms for r in busy)
        print(
            f"| {name} | {' · '.join(f'{r.p99_ms:.1f}' for r in idle)} | "
            f"{' · '.join(f'{r.p99_ms:.1f}' for r in busy)} | {busy_p99 / idle_p99:.2f} | "
            f"{statistics.median(r.requests_per_s for r in idle):,.0f} | "
            f"{statistics.median(r.requests_per_s for r in busy):,.0f} | "
            f"{statistics.median(r.cpu_us_per_request for r in busy):.1f} |"
        )


if __name__ == "__main__":
    main()
