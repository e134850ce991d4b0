"""DynamoDB writes per day for 10,000 assets, with and without the deviation + heartbeat gate,
and the candle rollups' writes that follow them.

``--bulk-assets N``: the first N assets are listed only by all-tickers venues (EXCHANGES), so
they are refreshed every BULK_ROUND_SECONDS instead of by tier. ``--assets N``: a universe of N
assets (a venues' universe, ``-usd`` prices included) instead of 10,000.

``python -m bench.history_cost``: samples a day of mockex's market at each tier's interval for a
sample of assets per tier, counts the aggregates the gate lets through, and scales to the tier
sizes. The market's volatility is the mock's (about 1-2 % a day), so the gated figure is what a
calm market costs; a volatile one moves the price past the threshold more often. Rollup writes
replay the writers' marks (``rollups.ROLLUP_LEVELS``, a pass every ``PASS_SECONDS``) over the
records' times: a write unit per KB of each block recomputed.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections.abc import Sequence

from aggserver.domain.candles import INTERVALS, LEVELS
from aggserver.domain.symbols import load_symbols
from aggserver.domain.tiers import HistoryGate
from aggserver.history.rollups.blocks import PASS_SECONDS, ROLLUP_LEVELS, block_start
from aggserver.settings import DEFAULT_SYMBOLS_FILE, Settings
from mockex.market import Market

DAY = 86_400
# On-demand price of one write request unit (an item under 1 KB), us-east-1.
USD_PER_MILLION_WRITES = 0.625
# A rollup item's key and attribute names, and one candle in it (offset, four prices, samples).
ITEM_BYTES = 40
CANDLE_BYTES = 75


def recorded_times(asset: str, interval: float, gate: HistoryGate | None, start: float) -> list[float]:
    """When a day of ``asset`` refreshed every ``interval`` seconds writes a record."""
    market = Market(seed=1)
    times = (start + step * interval for step in range(int(DAY / interval)))
    return [t for t in times if gate is None or gate.should_record(asset, market.price(asset, t), t)]


def streamed_times(asset: str, gate: HistoryGate | None, start: float) -> list[float]:
    """When a day of ``asset`` streamed (aggregated every second from the three mockex
    exchanges' quotes, as a streaming server re-aggregates it) writes a record."""
    market = Market(seed=1)
    times = []
    for step in range(DAY):
        t = start + step
        quotes = [market.quote(f"exchange{i}", asset, t) for i in (1, 2, 3)]
        price = sum(p * v for p, v in quotes) / sum(v for _, v in quotes)
        if gate is None or gate.should_record(asset, price, t):
            times.append(t)
    return times


def stream_cost(args: argparse.Namespace, symbols: Sequence[str]) -> None:
    """``--stream``: every asset aggregated every second; records and rollups a day, gated."""
    sample = symbols[:: max(1, len(symbols) // args.sample)][: args.sample]
    every = DAY * len(symbols)
    records = units = 0.0
    for asset in sample:
        gate = HistoryGate(deviation=args.deviation, heartbeat_seconds=args.heartbeat)
        times = streamed_times(asset, gate, 1_800_000_000)
        records += len(times) * len(symbols) / len(sample)
        units += rollup_write_units(times) * len(symbols) / len(sample)
    usd = USD_PER_MILLION_WRITES / 1e6
    gated = f"gated ({args.deviation:.2%} or {args.heartbeat:.0f} s)"
    print(f"| streaming, {len(symbols):,} assets | every aggregate | {gated} | + rollups |")
    print("|---|---|---|---|")
    cells = [f"{every:,.0f} (${every * usd:,.0f}/day)", f"{records:,.0f} (${records * usd:.2f}/day)"]
    print(f"| writes/day | {cells[0]} | {cells[1]} | {units:,.0f} (${units * usd:.2f}/day) |")


def rollup_write_units(times: Sequence[float]) -> int:
    """Write units of the rollup items that records written at ``times`` cause: each block's
    first mark waits its level's delay, a pass every PASS_SECONDS recomputes what is due and marks
    the parent block; an item costs a unit per KB (its candles so far, CANDLE_BYTES each)."""
    parents = {below: name for name, below in LEVELS.items() if below is not None}
    due: dict[str, dict[int, float]] = {name: {} for name in INTERVALS}
    ordered = sorted(times)
    units = 0

    def candles_in(name: str, start: int, until: float) -> int:
        span = INTERVALS[name] * ROLLUP_LEVELS[name].block
        inside = ordered[
            bisect.bisect_left(ordered, start) : bisect.bisect_left(ordered, min(until, start + span))
        ]
        return len({int(t) // INTERVALS[name] for t in inside})

    def passes_until(limit: float) -> None:
        nonlocal units
        while True:
            first = min((d for marks in due.values() for d in marks.values()), default=None)
            if first is None:
                return
            at = -(-first // PASS_SECONDS) * PASS_SECONDS  # the pass that finds it due
            if at > limit:
                return
            for name in INTERVALS:  # shortest first, as a pass runs them
                for start in [start for start, d in due[name].items() if d <= at]:
                    del due[name][start]
                    units += math.ceil((ITEM_BYTES + CANDLE_BYTES * candles_in(name, start, at)) / 1024)
                    parent = parents.get(name)
                    if parent is not None:
                        key = block_start(parent, start)
                        mark = at + ROLLUP_LEVELS[parent].delay
                        due[parent][key] = min(due[parent].get(key, mark), mark)

    for t in ordered:
        passes_until(t)
        key = block_start("1m", int(t))
        mark = t + ROLLUP_LEVELS["1m"].delay
        due["1m"][key] = min(due["1m"].get(key, mark), mark)
    passes_until(float("inf"))
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--deviation", type=float, default=0.005, help="relative move that records (default 0.5%%)"
    )
    parser.add_argument("--heartbeat", type=float, default=3600.0, help="seconds between forced records")
    parser.add_argument("--sample", type=int, default=10, help="assets simulated per tier")
    parser.add_argument(
        "--bulk-assets",
        type=int,
        default=0,
        help="assets listed only by all-tickers venues (EXCHANGES): refreshed every bulk round "
        "instead of by tier, taken from the top of symbols.csv (the mocks list the first 1,000)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="every asset streamed and aggregated every second (INGEST=stream) instead of by tier",
    )
    parser.add_argument(
        "--assets",
        type=int,
        default=0,
        help="a universe of this many assets instead of symbols.csv's 10,000 (the venues' universe: "
        "`/status` universe.symbols, pairs and -usd prices), its first ones in symbols.csv's order",
    )
    args = parser.parse_args()
    settings = Settings.from_env({})
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE).ordered
    if args.assets:
        symbols = tuple(symbols[i % len(symbols)] for i in range(args.assets))
    if args.stream:
        stream_cost(args, symbols)
        return
    hot_end = settings.hot_assets
    medium_end = hot_end + settings.medium_assets
    bulk = symbols[: args.bulk_assets]
    tiers = [
        ("bulk round", bulk, settings.bulk_round_seconds),
        ("hot", symbols[len(bulk) : max(hot_end, len(bulk))], settings.hot_interval_seconds),
        (
            "medium",
            symbols[max(hot_end, len(bulk)) : max(medium_end, len(bulk))],
            settings.medium_interval_seconds,
        ),
        ("cold", symbols[max(medium_end, len(bulk)) :], settings.cold_interval_seconds),
    ]
    tiers = [tier for tier in tiers if tier[1]]
    print(
        f"| tier | assets | interval s | records/day, every aggregate | + rollups | records/day, gated "
        f"({args.deviation:.1%} or {args.heartbeat:.0f} s) | + rollups |"
    )
    print("|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0]
    start = 1_800_000_000
    for name, members, interval in tiers:
        sample = members[:: max(1, len(members) // args.sample)][: args.sample]
        scale = len(members) / len(sample)
        row = [0.0, 0.0, 0.0, 0.0]
        for asset in sample:
            gate = HistoryGate(deviation=args.deviation, heartbeat_seconds=args.heartbeat)
            for column, times in enumerate(
                (recorded_times(asset, interval, None, start), recorded_times(asset, interval, gate, start))
            ):
                row[2 * column] += len(times) * scale
                row[2 * column + 1] += rollup_write_units(times) * scale
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        print(f"| {name} | {len(members):,} | {interval:g} | " + " | ".join(f"{v:,.0f}" for v in row) + " |")
    cells = [f"{t:,.0f} (${t / 1e6 * USD_PER_MILLION_WRITES:.2f}/day)" for t in totals]
    print(f"| all | {len(symbols):,} | | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
