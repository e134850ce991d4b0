"""``aggserver``: ``serve`` runs the server (``--workers N`` under a supervisor); ``ingest``
runs the data plane alone;
``history-writer`` writes the history outbox into DynamoDB; ``backfill-candles`` writes candle
rollups of older history; ``venues`` checks the exchanges; ``symbols`` prints the venues'
universe. The local stack is ``python -m devstack``.

Each command imports what it runs when it runs: ``history-writer`` loads neither the aiohttp
server nor the scheduler, and a signal that arrives while it is still importing is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from aggserver import __version__
from aggserver.errors import ConfigError
from aggserver.process.children import note_early_signals
from aggserver.process.logs import setup_logging
from aggserver.settings import Settings

__all__ = ["add_listen_arguments", "main", "settings_from"]


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (overrides HOST)")
    parser.add_argument("--port", type=int, help="listen port (overrides PORT)")


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings of the environment, with ``--host`` and ``--port`` taking precedence."""
    overrides = dict(environ)
    if args.host:
        overrides["HOST"] = args.host
    if args.port is not None:
        overrides["PORT"] = str(args.port)
    return Settings.from_env(overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggserver",
        description="Real-time volume-weighted prices from several exchanges, cached in Redis, "
        "recorded in DynamoDB. Settings come from environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"aggserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server against configured backends")
    add_listen_arguments(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (SO_REUSEPORT); one of them, holding the "
        "refresh lease in Redis, does the refreshing (default %(default)s)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
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
    commands.add_parser(
        "ingest",
        help="run the data plane alone until SIGTERM: listings, polling and streams, aggregation, "
        "USD prices, the scheduler and its leases, no HTTP server (serve starts one itself with "
        "DATA_PLANE=process; run any number beside DATA_PLANE=external servers)",
    )
    commands.add_parser(
        "symbols",
        help="print the universe the configured venues list (symbol,base,quote,venues CSV, "
        "filtered by UNIVERSE_QUOTES and UNIVERSE_MIN_VENUES), to freeze into a SYMBOLS_FILE",
    )
    return parser


def _serve(args: argparse.Namespace) -> None:
    settings = settings_from(args, os.environ)
    setup_logging(settings)
    if args.workers < 1:
        raise ConfigError("--workers must be 1 or more")
    if args.workers == 1:
        from aggserver.process.serving import run

        run(settings, reuse_port=args.reuse_port)
        return
    from aggserver.process.supervisor import supervise

    listen = ["--host", args.host] if args.host else []
    listen += ["--port", str(args.port)] if args.port is not None else []
    supervise(settings, args.workers, listen)


def _write_history(settings: Settings) -> None:
    # Asked to stop while still importing (botocore is slow to load), the writer must still
    # drain the outbox rather than die of the default action.
    stopped_early = note_early_signals()
    import uvloop

    from aggserver.history.writer_process import serve_writer

    uvloop.run(serve_writer(settings, stopped_early=stopped_early))


def _backfill(args: argparse.Namespace, settings: Settings) -> None:
    import uvloop

    from aggserver.domain.symbols import load_symbols
    from aggserver.history.backfill import backfill_candles

    named = [a.strip().lower() for a in (args.assets or "").split(",") if a.strip()]
    assets = named or list(load_symbols(settings.symbols_file).ordered)
    uvloop.run(backfill_candles(settings, assets, sys.stdout))


def _probe(settings: Settings) -> None:
    import uvloop

    from aggserver.exchanges.probe import probe_venues

    if uvloop.run(probe_venues(settings, sys.stdout)):
        sys.exit(1)


def _ingest(settings: Settings) -> None:
    # As the writer does: a signal that arrives while the command is importing is kept.
    stopped_early = note_early_signals()
    import uvloop

    from aggserver.process.data_plane import serve_data_plane

    uvloop.run(serve_data_plane(settings, stopped_early=stopped_early))


def _print_universe(settings: Settings) -> None:
    import uvloop

    from aggserver.engine.universe import print_universe

    if uvloop.run(print_universe(settings, sys.stdout)):
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
            return
        settings = Settings.from_env(os.environ)
        setup_logging(settings)
        if args.command == "history-writer":
            _write_history(settings)
        elif args.command == "backfill-candles":
            _backfill(args, settings)
        elif args.command == "ingest":
            _ingest(settings)
        elif args.command == "symbols":
            _print_universe(settings)
        else:
            _probe(settings)
    except ConfigError as exc:
        sys.exit(f"aggserver: {exc}")
    except KeyboardInterrupt:
        pass
