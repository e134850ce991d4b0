"""``python -m bench.profile``: where a hot run spends the server's time, by py-spy.

Starts the same stack as ``python -m bench`` (or the bare ceiling server with ``--ceiling``),
waits until every price and all history are in, runs wrk's ``hot`` scenario and samples the
server with ``py-spy record`` meanwhile. Prints the frames with the most time of their own and
the share of samples under a few frames that matter (the handler, routing, parsing, writing).
Needs py-spy (in the dev dependencies) and root or ptrace rights over the server.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.runner import (
    HOT_ASSET,
    SYMBOL_COUNT,
    _running,
    run_wrk,
    server_env,
    start_ceiling,
    start_server,
    start_writer,
    wait_all_cached,
    wait_history,
)
from devstack.services import free_port, start_dynamo, start_mockex, start_redis

# Frames whose inclusive share is printed when present.
WATCHED = (
    "guarded.<locals>.wrap.<locals>.guarded_handler",
    "get_price",
    "PriceReader.answer",
    "PriceReader.render",
    "RequestStats.record",
    "Application._handle",
    "UrlDispatcher.resolve",
    "RequestHandler.data_received",
    "RequestHandler.finish_response",
    "Refresher._store",
    "HistoryWriter.run",
)


def _python_pid(pid: int) -> int:
    """The server's own pid: the process, or its child when started under taskset."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(children[0]) if children else pid


def summarise(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for name in {frame.split(" (")[0] for frame in frames}:
            inclusive[name] += samples
    print(f"{total:,} samples (the server busy; idle time in epoll is not sampled)\nown time:")
    for frame, samples in own.most_common(top):
        print(f"  {samples / total:6.1%}  {frame}")
    print("under:")
    for name in WATCHED:
        if inclusive[name]:
            print(f"  {inclusive[name] / total:6.1%}  {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--ceiling", action="store_true", help="profile the bare ceiling server instead")
    parser.add_argument("--seconds", type=int, default=8, help="sampling time (default %(default)s)")
    parser.add_argument("--top", type=int, default=15, help="frames listed (default %(default)s)")
    parser.add_argument(
        "--checkout", type=Path, help="run the server from this aggserver checkout (an older build, say)"
    )
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        if args.ceiling:
            server = stack.enter_context(_running(start_ceiling(free_port(), body_size=190)))
        else:
            redis = stack.enter_context(_running(start_redis()))
            dynamo = stack.enter_context(_running(start_dynamo()))
            exchanges = [stack.enter_context(_running(start_mockex(name=f"exchange{i}"))) for i in (1, 2, 3)]
            env = server_env(redis.url, dynamo.url, exchanges)
            stack.enter_context(_running(start_writer(env)))
            checkout = args.checkout.resolve() if args.checkout else None
            server = stack.enter_context(_running(start_server(env, free_port(), checkout=checkout)[0]))
            wait_all_cached(redis.url, SYMBOL_COUNT)
            wait_history(dynamo.url, "prices", SYMBOL_COUNT)
        raw = Path(scratch) / "stacks.txt"
        pid = str(_python_pid(server.process.pid))
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                pid,
                "-d",
                str(args.seconds),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        figures = run_wrk(
            f"{server.url}/prices/{HOT_ASSET}",
            connections=100,
            seconds=args.seconds + 2,
            script="report.lua",
            args=[],
        )
        sampler.wait(timeout=60)
        print(f"{'ceiling' if args.ceiling else 'aggserver'} hot: {figures.requests_per_s:,.0f} req/s")
        summarise(raw, args.top)


if __name__ == "__main__":
    main()
