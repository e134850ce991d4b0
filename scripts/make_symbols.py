"""Regenerate symbols.csv: well-known pairs first, then deterministic synthetic ones.

Run from the repository root: ``python scripts/make_symbols.py``. The output is the same on
every run, so the file in git only changes when this script does.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

TOTAL = 10_000
SEED = 20_231_001

# Real, widely traded pairs; mockex gives these their real price magnitudes.
WELL_KNOWN = (
    "btcusdt",
    "ethusdt",
    "bnbusdt",
    "solusdt",
    "xrpusdt",
    "adausdt",
    "dogeusdt",
    "trxusdt",
    "tonusdt",
    "avaxusdt",
    "shibusdt",
    "dotusdt",
    "linkusdt",
    "bchusdt",
    "ltcusdt",
    "nearusdt",
    "maticusdt",
    "uniusdt",
    "atomusdt",
    "xlmusdt",
    "etcusdt",
    "filusdt",
    "aptusdt",
    "arbusdt",
    "opusdt",
    "injusdt",
    "pepeusdt",
    "suiusdt",
    "aaveusdt",
    "ethbtc",
)
QUOTES = ("usdt", "usdc", "btc", "eth")


def generate() -> list[str]:
    rng = random.Random(SEED)
    symbols = list(WELL_KNOWN)
    seen = set(symbols)
    while len(symbols) < TOTAL:
        base = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 6)))
        symbol = base + rng.choice(QUOTES)
        if symbol not in seen:
            seen.add(symbol)
            symbols.append(symbol)
    return symbols


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "symbols.csv"
    target.write_text("symbol\n" + "\n".join(generate()) + "\n", encoding="ascii")
    print(f"wrote {TOTAL} symbols to {target}")


if __name__ == "__main__":
    main()
