"""The venues suite: a realistic universe from five venue mocks, priced with and without the
``-usd`` prices.

Each mock lists its own realistic universe (``mockex --universe realistic:N``: ~1,500 pairs against
USD, USDT, USDC, EUR, BTC and ETH, two venues sharing ~60 % of their pairs); the server takes
``UNIVERSE=venues`` from them and ingests as it would in production (Binance, OKX and Bybit
stream, Kraken's all-tickers answer and Coinbase's per-product tickers are polled). Printed:
the first round (every pair that an all-tickers or streaming venue lists priced, and every pair
at all), the steady bulk round, the server's CPU per 1,000 streamed tickers, what the ``-usd``
prices add to it, and the freshness p99 of the pairs and of the ``-usd`` prices.

    python -m bench --suite venues [--venue-pairs 1500] [--duration 20]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass

import redis as redis_sync

from aggserver.domain.price import CachedPrice
from bench.runner import cpu_seconds, start_server
from devstack.services import Service, free_port, start_mockex
from mockex.universe import realistic_markets

__all__ = ["UNIVERSE_VENUES", "UniverseRun", "run_universe_rounds"]

UNIVERSE_VENUES = ("binance", "okx", "bybit", "kraken", "coinbase")
# Coinbase answers one product per request (10 a second): its pairs alone take minutes to poll.
PER_PRODUCT = frozenset({"coinbase"})
WAIT_SECONDS = 240.0


@dataclass(frozen=True, slots=True)
class UniverseRun:
    usd_prices: bool
    pairs: int
    usd_assets: int
    first_round_seconds: float
    every_pair_seconds: float | None
    steady_bulk_round_seconds: float | None
    streamed_tickers_per_s: float
    cpu_share: float
    cpu_ms_per_1000_tickers: float
    usd_passes_per_s: float
    pair_age_p99_seconds: float
    usd_age_p99_seconds: float | None
    pairs_missing: int


def _status(server: Service) -> dict[str, object]:
    with urllib.request.urlopen(f"{server.url}/status", timeout=10) as response:  # noqa: S310 - ours
        return dict(json.loads(response.read()))


def _priced(client: redis_sync.Redis) -> set[str]:
    return {key.decode().removeprefix("price:") for key in client.scan_iter("price:*", count=5_000)}


def _wait_priced(client: redis_sync.Redis, wanted: set[str], timeout: float) -> float | None:
    started = time.monotonic()
    while not wanted <= _priced(client):
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.1)
    return time.monotonic() - started


def _ages(client: redis_sync.Redis, assets: list[str]) -> list[float]:
    now = time.time()
    ages = []
    for start in range(0, len(assets), 1_000):
        for raw in client.mget([f"price:{a}" for a in assets[start : start + 1_000]]):
            if isinstance(raw, bytes):
                price = CachedPrice.decode(raw)
                at = price.last_updated_ms / 1000 if price.last_updated_ms else float(price.last_updated)
                ages.append(max(0.0, now - at))
    return ages


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan


def _streamed(status: dict[str, object]) -> int:
    exchanges = status["exchanges"]
    assert isinstance(exchanges, list)
    return sum(int(e["stream"]["tickers"]) for e in exchanges if e.get("stream"))


def _one_run(
    redis_url: str,
    env: dict[str, str],
    mocks: dict[str, Service],
    listed: dict[str, set[str]],
    *,
    usd: bool,
    window: float,
) -> UniverseRun:
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    pairs = set().union(*listed.values())
    quick = set().union(*(s for venue, s in listed.items() if venue not in PER_PRODUCT))
    server, _ = start_server(
        {
            **env,
            "REDIS_URL": redis_url,
            "EXCHANGES": ",".join(f"{venue}={mock.url}" for venue, mock in mocks.items()),
            "PRICES_TABLE": "prices_universe",
            "UNIVERSE": "venues",
            "USD_PRICES": "true" if usd else "false",
        },
        free_port(),
    )
    try:
        first = _wait_priced(client, quick, WAIT_SECONDS)
        if first is None:
            raise RuntimeError(
                f"the pairs of the all-tickers and streaming venues not priced in {WAIT_SECONDS} s"
            )
        every = _wait_priced(client, pairs, 60.0)
        before, cpu_before, at = _status(server), cpu_seconds(server.process.pid), time.monotonic()
        time.sleep(window)
        after, cpu_after, took = _status(server), cpu_seconds(server.process.pid), time.monotonic() - at
        tickers = _streamed(after) - _streamed(before)
        cpu = cpu_after - cpu_before
        universe = after["universe"]
        assert isinstance(universe, dict)
        usd_assets = sorted(_priced(client) - pairs)
        pair_ages = _ages(client, sorted(pairs))
        usd_ages = _ages(client, usd_assets)
        rounds = after["refresh"]
        assert isinstance(rounds, dict)
        return UniverseRun(
            usd_prices=usd,
            pairs=len(pairs),
            usd_assets=int(universe["usd_prices"]),
            first_round_seconds=first,
            every_pair_seconds=every if every is None else first + every,
            steady_bulk_round_seconds=rounds["round_seconds"].get("bulk"),
            streamed_tickers_per_s=tickers / took,
            cpu_share=cpu / took,
            cpu_ms_per_1000_tickers=1e6 * cpu / max(1, tickers),
            usd_passes_per_s=(int(universe["usd_passes"]) - int(before["universe"]["usd_passes"])) / took,  # type: ignore[index]
            pair_age_p99_seconds=_p99(pair_ages),
            usd_age_p99_seconds=_p99(usd_ages) if usd_ages else None,
            pairs_missing=len(pairs) - len(pair_ages),
        )
    finally:
        server.stop()
        client.close()


def run_universe_rounds(
    stack: ExitStack, redis_url: str, env: dict[str, str], args: argparse.Namespace
) -> dict[str, object]:
    """The realistic universe priced with ``-usd`` prices and without; both runs' figures."""
    size = args.venue_pairs
    mocks = {}
    for venue in UNIVERSE_VENUES:
        mocks[venue] = start_mockex(name=venue, venue=venue, universe=f"realistic:{size}")
        stack.callback(mocks[venue].stop)
    listed = {venue: set(realistic_markets(venue, size)) for venue in UNIVERSE_VENUES}
    # A database of its own: the mockex-format server keeps running (and holding its lease) in 0.
    redis_url = redis_url.rsplit("/", 1)[0] + "/1"
    runs = [_one_run(redis_url, env, mocks, listed, usd=usd, window=args.duration) for usd in (True, False)]
    with_usd, without = runs
    extra = with_usd.cpu_share - without.cpu_share
    print(
        f"\nvenues: realistic universe, {len(mocks)} venue mocks of {size:,} pairs each: "
        f"{with_usd.pairs:,} pairs, {with_usd.usd_assets:,} -usd prices"
    )
    print(
        "| | first round s | every pair s | steady bulk round s | tickers/s | server CPU | "
        "CPU ms / 1,000 tickers | -usd passes/s | pair age p99 s | -usd age p99 s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {'with' if run.usd_prices else 'without'} -usd | {run.first_round_seconds:.1f} | "
            f"{_maybe(run.every_pair_seconds)} | {_maybe(run.steady_bulk_round_seconds, 2)} | "
            f"{run.streamed_tickers_per_s:,.0f} | {run.cpu_share:.0%} | {run.cpu_ms_per_1000_tickers:.1f} | "
            f"{run.usd_passes_per_s:.1f} | {run.pair_age_p99_seconds:.1f} | "
            f"{_maybe(run.usd_age_p99_seconds)} |"
        )
    print(
        f"the -usd prices cost {extra:+.0%} of a core ({extra / max(without.cpu_share, 1e-9):+.0%})",
        flush=True,
    )
    return {"runs": [asdict(run) for run in runs], "usd_extra_cpu_share": extra}


def _maybe(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
