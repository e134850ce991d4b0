"""DynamoDB writes per day for 10,000 assets, with and without the deviation + heartbeat gate.

``--bulk-assets N``: the first N assets are listed only by all-tickers venues (EXCHANGES), so
they are refreshed every BULK_ROUND_SECONDS instead of by tier.

``python -m bench.history_cost``: samples a day of mockex's market at each tier's interval for a
sample of assets per tier, counts the aggregates the gate lets through, and scales to the tier
sizes. The market's volatility is the mock's (about 1-2 % a day), so the gated figure is what a
calm market costs; a volatile one moves the price past the threshold more often.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aggserver.history import HistoryGate
from aggserver.settings import DEFAULT_SYMBOLS_FILE, Settings
from aggserver.symbols import load_symbols
from mockex.market import Market

DAY = 86_400
# On-demand price of one write request unit (an item under 1 KB), us-east-1.
USD_PER_MILLION_WRITES = 0.625


def writes_per_day(assets: Sequence[str], interval: float, gate: HistoryGate | None, start: float) -> float:
    market = Market(seed=1)
    steps = int(DAY / interval)
    written = 0
    for asset in assets:
        for step in range(steps):
            t = start + step * interval
            if gate is None or gate.should_record(asset, market.price(asset, t), t):
                written += 1
    return written / len(assets)


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
    args = parser.parse_args()
    settings = Settings.from_env({})
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE).ordered
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
        f"| tier | assets | interval s | writes/day, every aggregate | writes/day, gated "
        f"({args.deviation:.1%} or {args.heartbeat:.0f} s) |"
    )
    print("|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for name, members, interval in tiers:
        sample = members[:: max(1, len(members) // args.sample)][: args.sample]
        every = DAY / interval * len(members)
        gate = HistoryGate(deviation=args.deviation, heartbeat_seconds=args.heartbeat)
        gated = writes_per_day(sample, interval, gate, start=1_800_000_000) * len(members)
        totals[0] += every
        totals[1] += gated
        print(f"| {name} | {len(members):,} | {interval:g} | {every:,.0f} | {gated:,.0f} |")
    cost = [t / 1e6 * USD_PER_MILLION_WRITES for t in totals]
    every_day, gated_day = (f"{t:,.0f} (${c:.2f}/day)" for t, c in zip(totals, cost, strict=True))
    print(f"| all | {len(symbols):,} | | {every_day} | {gated_day} |")


if __name__ == "__main__":
    main()
