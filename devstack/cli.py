"""``python -m devstack`` (what ``./dev run`` runs): the server with every backing service it is
not pointed at started locally: mock exchanges, redis-server and a DynamoDB-compatible server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aggserver.cli import add_listen_arguments, settings_from
from aggserver.errors import ConfigError
from aggserver.process.logs import setup_logging
from aggserver.process.serving import run
from aggserver.settings import Settings
from aggserver.venues import VENUES
from devstack.progress import warm_up_progress
from devstack.services import (
    DUMMY_AWS_ENV,
    Service,
    ServiceError,
    free_port,
    port_is_free,
    start_dynamo,
    start_mockex,
    start_redis,
)

__all__ = ["VENUE_PORTS", "main"]

# Where ``--venues`` puts each venue's mock when the port is free (beside mockex's 8081-8083).
VENUE_PORTS = {"binance": 8091, "okx": 8092, "bybit": 8093, "kraken": 8094, "coinbase": 8095}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="run the whole local stack: mock exchanges, redis-server, a DynamoDB-compatible "
        "server (for whatever is not configured) and the server",
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--venues",
        help="run venue-format mock exchanges instead of the three mockex ones: a comma-separated "
        f"list of {', '.join(VENUES)} (sets EXCHANGES)",
    )
    parser.add_argument(
        "--venue-pairs",
        type=int,
        default=1_500,
        help="with --venues: how many pairs each venue mock lists, a realistic universe against "
        "USD, USDT, USDC, EUR, BTC and ETH (default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("AGGSERVER_DATA_DIR", ".aggserver-data"),
        help="where the local Redis (append-only file) and DynamoDB keep their data between runs "
        "(default %(default)s)",
    )
    return parser


def _preferred_port(port: int) -> int:
    return port if port_is_free(port) else free_port()


def _venue_list(raw: str | None) -> list[str]:
    venues = [v.strip().lower() for v in (raw or "").split(",") if v.strip()]
    unknown = [v for v in venues if v not in VENUES]
    if unknown:
        raise ConfigError(f"--venues: unknown {', '.join(unknown)} (known: {', '.join(VENUES)})")
    return list(dict.fromkeys(venues))


def _start_services(
    env: dict[str, str], data_dir: Path, services: list[Service], venues: list[str], venue_pairs: int = 1_500
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
            mock = start_mockex(
                _preferred_port(VENUE_PORTS[venue]),
                name=venue,
                venue=venue,
                universe=f"realistic:{venue_pairs}",
            )
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


def _print_banner(services: list[Service], settings: Settings) -> None:
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    base = f"http://{shown}:{settings.port}"
    print("\naggserver local stack")
    for service in services:
        print(f"  {service.name:<10} {service.url}  (pid {service.process.pid})")
    print(f"  {'aggserver':<10} {base}")
    print(f"\ntry:\n  curl -X POST {base}/refresh/btcusdt\n  curl {base}/prices/btcusdt")
    if settings.universe_source == "venues":
        print(f"  curl '{base}/prices/btc-usd?detail=sources'   # BTC in dollars, every market converted")
    print("Ctrl-C stops everything.\n", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    # One process on the local stack, so its warm-up round shows here (DATA_PLANE=process works too).
    env.setdefault("DATA_PLANE", "inline")
    services: list[Service] = []
    try:
        _start_services(
            env, Path(args.data_dir).resolve(), services, _venue_list(args.venues), args.venue_pairs
        )
        os.environ.update(env)  # botocore reads the credentials from the environment
        settings = settings_from(args, env)
        setup_logging(settings)
        _print_banner(services, settings)
        run(settings, extra_contexts=[warm_up_progress] if settings.auto_refresh else [])
    except (ConfigError, ServiceError) as exc:
        sys.exit(f"devstack: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(services):
            service.stop()
