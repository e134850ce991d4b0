"""``python -m bench.compare BEFORE AFTER``: the hot path of two checkouts, interleaved.

On a shared machine the load drifts within minutes, so two builds are only comparable when
measured in the same minutes. This starts both servers (each on its own Redis, sharing the
exchanges and DynamoDB), waits until both have every price and all history, then alternates wrk
runs of ``hot`` and ``uniform`` between them (swapping which goes first every round) and prints
each run and the medians. BEFORE and
AFTER are directories of aggserver checkouts (``git worktree add /tmp/before <commit>``).
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack
from pathlib import Path

from aggserver.settings import DEFAULT_SYMBOLS_FILE
from bench.runner import (
    HOT_ASSET,
    SYMBOL_COUNT,
    Figures,
    _running,
    run_wrk,
    server_env,
    start_server,
    start_writer,
    wait_all_cached,
    wait_history,
)
from devstack.services import free_port, start_dynamo, start_mockex, start_redis


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--rounds", type=int, default=4, help="runs per build and scenario (default %(default)s)"
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default %(default)s)")
    parser.add_argument(
        "--before-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the BEFORE server only: compare one build with itself, e.g. "
        "`. . --before-env REQUEST_METRICS=false` prices the request metrics",
    )
    parser.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    extra_env = {
        "before": dict(item.split("=", 1) for item in args.before_env),
        "after": dict(item.split("=", 1) for item in args.after_env),
    }
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[tuple[str, str], list[Figures]] = {(b, s): [] for b in builds for s in ("hot", "uniform")}
    with ExitStack() as stack:
        dynamo = stack.enter_context(_running(start_dynamo()))
        exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
        servers = {}
        for name, root in builds.items():
            redis = stack.enter_context(_running(start_redis()))
            env = server_env(
                redis.url, dynamo.url, exchanges, PRICES_TABLE=f"prices_{name}", **extra_env[name]
            )
            stack.enter_context(_running(start_writer(env)))
            server, _ = start_server(env, free_port(), checkout=root)
            servers[name] = stack.enter_context(_running(server))
            wait_all_cached(redis.url, SYMBOL_COUNT)
            wait_history(dynamo.url, f"prices_{name}", SYMBOL_COUNT)
        order = list(servers)
        for _ in range(args.rounds):
            # Whoever goes first in a round has measured slower here: alternate the order.
            for name in order:
                server = servers[name]
                for scenario, url, script, extra in (
                    ("hot", f"{server.url}/prices/{HOT_ASSET}", "report.lua", []),
                    ("uniform", f"{server.url}/", "uniform.lua", [str(DEFAULT_SYMBOLS_FILE)]),
                ):
                    figures = run_wrk(
                        url,
                        connections=100,
                        seconds=args.duration,
                        script=script,
                        args=extra,
                        watch=server.process.pid,
                    )
                    results[name, scenario].append(figures)
                    print(
                        f"{name:<7} {scenario:<8} {figures.requests_per_s:>9,.0f} req/s  "
                        f"CPU {figures.cpu_us_per_request:5.1f} µs/request",
                        flush=True,
                    )
            order.reverse()
    print(
        "\n| build | hot req/s (runs) | median | CPU µs/request | "
        "uniform req/s (runs) | median | CPU µs/request |\n|---|---|---|---|---|---|---|"
    )
    for name in builds:
        cells = []
        for scenario in ("hot", "uniform"):
            runs = results[name, scenario]
            cells += [
                " · ".join(f"{r.requests_per_s:,.0f}" for r in runs),
                f"{statistics.median(r.requests_per_s for r in runs):,.0f}",
                f"{statistics.median(r.cpu_us_per_request for r in runs):.1f}",
            ]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
