"""``mockex``: run one simulated exchange, or all three of the local stack at once.

A separate program from aggserver: it reads its own symbols file and imports nothing of it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import uvloop
from aiohttp import web

from mockex import __version__, pricing
from mockex.app import create_app
from mockex.symbols import DEFAULT_SYMBOLS_FILE, SymbolList, SymbolsError, checked_symbols, load_symbols
from mockex.universe import DEFAULT_SIZE, MAX_SIZE, VENUES, realistic_markets
from mockex.venues import PERSONALITIES

# Real venues list the popular part of the market, not all 10,000 of our symbols.
DEFAULT_LISTED = 1_000
REALISTIC = "realistic"


@dataclass(frozen=True, kw_only=True)
class Markets:
    """What the exchanges know, what a venue lists of it, and the pairs on paths of their own."""

    symbols: SymbolList
    listed: SymbolList
    own_paths: frozenset[str]


def universe_size(text: str) -> int:
    """``realistic`` or ``realistic:SIZE`` -> the size of the universe."""
    kind, _, size = text.partition(":")
    if kind != REALISTIC or (size and not size.isdigit()) or not 1 <= int(size or DEFAULT_SIZE) <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: the form is {REALISTIC}[:SIZE], SIZE 1 to {MAX_SIZE}")
    return int(size or DEFAULT_SIZE)


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
        help=f"with --venue: how many symbols, from the top of the symbols file, it lists "
        f"(default {DEFAULT_LISTED}; 0 lists them all), or a comma-separated list of pairs, which "
        "may be pairs the file does not hold (btcusd, usdtusd, ethbtc)",
    )
    parser.add_argument(
        "--universe",
        type=universe_size,
        metavar=f"{REALISTIC}[:SIZE]",
        help=f"with --venue: list the venue's realistic universe of SIZE pairs (default {DEFAULT_SIZE}) "
        "instead of symbols from the file: real and synthetic coins against USD, USDT, USDC, EUR, "
        "BTC and ETH, priced consistently across pairs and venues",
    )
    parser.add_argument("--seed", type=int, default=0, help="market seed; equal seeds, equal prices")
    parser.add_argument(
        "--symbols-file", default=str(DEFAULT_SYMBOLS_FILE), help="symbols CSV (default: bundled list)"
    )
    parser.add_argument("--version", action="version", version=f"mockex {__version__}")
    args = parser.parse_args(argv)
    if args.all and args.venue:
        parser.error("--all serves mockex's own format; run one process per --venue")
    if args.universe is not None and (args.venue is None or args.listed is not None):
        parser.error("--universe needs --venue, and lists the universe instead of --listed")
    listed = str(DEFAULT_LISTED) if args.listed is None else args.listed
    if listed.isdigit():
        args.listed = int(listed)
    else:
        try:
            args.listed = checked_symbols(s for s in listed.split(",") if s.strip())
        except SymbolsError as exc:
            parser.error(f"--listed: {exc}")
        if not args.listed:
            parser.error("--listed takes a count or a comma-separated list of symbols")
    return args


def markets(args: argparse.Namespace) -> Markets:
    """The markets of the exchanges ``args`` asks for."""
    if args.universe is not None:
        # The venue knows the other venues' pairs too: its listing shows some as not trading.
        listed = SymbolList(realistic_markets(args.venue, args.universe))
        others = (s for venue in VENUES for s in realistic_markets(venue, args.universe))
        return Markets(symbols=listed.union(others), listed=listed, own_paths=frozenset())
    symbols = load_symbols(Path(args.symbols_file))
    own_paths = pricing.own_paths(symbols.ordered)
    if isinstance(args.listed, tuple):
        listed = SymbolList(args.listed)
        return Markets(symbols=symbols.union(listed.ordered), listed=listed, own_paths=own_paths)
    listed = symbols.first(args.listed) if args.venue and args.listed else symbols
    return Markets(symbols=symbols, listed=listed, own_paths=own_paths)


async def _serve(args: argparse.Namespace) -> None:
    known = markets(args)
    listed = known.listed
    names = [f"exchange{i}" for i in (1, 2, 3)] if args.all else [args.name or args.venue or "exchange1"]
    runners = []
    for offset, name in enumerate(names):
        app = create_app(
            name=name,
            symbols=known.symbols,
            seed=args.seed,
            venue=args.venue,
            listed=listed,
            own_paths=known.own_paths,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port + offset).start()
        runners.append(runner)
        base = f"http://{args.host}:{args.port + offset}"
        where = (
            f"{base} ({args.venue} format, {len(listed):,} symbols listed"
            f"{', realistic universe' if args.universe else ''})"
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
