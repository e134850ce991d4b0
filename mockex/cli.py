"""``mockex``: run one simulated exchange, or all three of the local stack at once."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop
from aiohttp import web

from aggserver.errors import ConfigError
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.symbols import load_symbols
from mockex import __version__
from mockex.app import create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mockex",
        description="Simulated exchanges serving GET /mock/ticker/{symbol} with moving prices.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on (default %(default)s)")
    parser.add_argument("--name", default="exchange1", help="exchange name (default %(default)s)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="serve exchange1..3 on --port, --port+1 and --port+2 in one process",
    )
    parser.add_argument("--seed", type=int, default=0, help="market seed; equal seeds, equal prices")
    parser.add_argument(
        "--symbols-file", default=str(DEFAULT_SYMBOLS_FILE), help="symbols CSV (default: bundled list)"
    )
    parser.add_argument("--version", action="version", version=f"mockex {__version__}")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    symbols = load_symbols(Path(args.symbols_file))
    names = [f"exchange{i}" for i in (1, 2, 3)] if args.all else [args.name]
    runners = []
    for offset, name in enumerate(names):
        runner = web.AppRunner(create_app(name=name, symbols=symbols, seed=args.seed), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port + offset).start()
        runners.append(runner)
        print(f"mockex {name} on http://{args.host}:{args.port + offset}/mock/ticker/{{symbol}}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        uvloop.run(_serve(args))
    except ConfigError as exc:
        sys.exit(f"mockex: {exc}")
    except KeyboardInterrupt:
        pass
