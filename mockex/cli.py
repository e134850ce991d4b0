"""``mockex``: run one simulated exchange, or all three of the local stack at once.

A separate program from aggserver: it reads its own symbols file and imports nothing of it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvloop
from aiohttp import web

from mockex import __version__
from mockex.app import create_app
from mockex.symbols import DEFAULT_SYMBOLS_FILE, SymbolList, SymbolsError, load_symbols
from mockex.venues import PERSONALITIES

# Real venues list the popular part of the market, not all 10,000 of our symbols.
DEFAULT_LISTED = 1_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mockex",
        description="Simulated exchanges serving moving prices: GET /mock/ticker/{symbol} in mockex's own "
        "format, or a real venue's public market-data API with --venue.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on (default %(default)s)")
    parser.add_argument("--name", default=None, help="exchange name (default exchange1, or the venue)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="serve exchange1..3 on --port, --port+1 and --port+2 in one process",
    )
    parser.add_argument(
        "--venue",
        choices=sorted(PERSONALITIES),
        help="speak this venue's paths, fields, envelopes, errors and rate-limit answers",
    )
    parser.add_argument(
        "--listed",
        default=str(DEFAULT_LISTED),
        help="with --venue: how many symbols, from the top of the symbols file, it lists "
        "(default %(default)s; 0 lists them all), or a comma-separated list of them",
    )
    parser.add_argument("--seed", type=int, default=0, help="market seed; equal seeds, equal prices")
    parser.add_argument(
        "--symbols-file", default=str(DEFAULT_SYMBOLS_FILE), help="symbols CSV (default: bundled list)"
    )
    parser.add_argument("--version", action="version", version=f"mockex {__version__}")
    args = parser.parse_args(argv)
    if args.all and args.venue:
        parser.error("--all serves mockex's own format; run one process per --venue")
    if args.listed.isdigit():
        args.listed = int(args.listed)
    else:
        args.listed = [s.strip().lower() for s in args.listed.split(",") if s.strip()]
        if not args.listed:
            parser.error("--listed takes a count or a comma-separated list of symbols")
    return args


async def _serve(args: argparse.Namespace) -> None:
    symbols = load_symbols(Path(args.symbols_file))
    names = [f"exchange{i}" for i in (1, 2, 3)] if args.all else [args.name or args.venue or "exchange1"]
    if isinstance(args.listed, list):
        unknown = [s for s in args.listed if s not in symbols]
        if unknown:
            raise SymbolsError(f"--listed names symbols not in the symbols file: {', '.join(unknown)}")
        listed = SymbolList(tuple(args.listed))
    else:
        listed = symbols.first(args.listed) if args.venue and args.listed else symbols
    runners = []
    for offset, name in enumerate(names):
        app = create_app(name=name, symbols=symbols, seed=args.seed, venue=args.venue, listed=listed)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port + offset).start()
        runners.append(runner)
        base = f"http://{args.host}:{args.port + offset}"
        where = (
            f"{base} ({args.venue} format, {len(listed):,} symbols listed)"
            if args.venue
            else f"{base}/mock/ticker/{{symbol}}"
        )
        print(f"mockex {name} on {where}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        uvloop.run(_serve(args))
    except SymbolsError as exc:
        sys.exit(f"mockex: {exc}")
    except KeyboardInterrupt:
        pass
