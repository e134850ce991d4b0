"""A deterministic market: every process with the same seed sees the same prices at the same time.

Each symbol's log-price follows a path built from smooth noise at three time scales (seconds,
minutes, hours), so it wanders like a random walk but can be evaluated at any instant without
replaying history. That lets three independent exchange processes share one underlying price;
each exchange then quotes its own small deviation from it, with its own volume. Which shared
price a pair has (its own path, or its assets' USD values divided) is ``mockex.pricing``'s rule.
"""

from __future__ import annotations

import functools
import hashlib
import math
from statistics import NormalDist

__all__ = ["DEVIATION", "WELL_KNOWN_PRICES", "Market", "reference_price", "uniform"]

WELL_KNOWN_PRICES = {
    "btcusdt": 91_000.0,
    "ethusdt": 3_050.0,
    "bnbusdt": 610.0,
    "solusdt": 145.0,
    "xrpusdt": 0.62,
    "adausdt": 0.45,
    "dogeusdt": 0.16,
    "trxusdt": 0.12,
    "tonusdt": 5.4,
    "avaxusdt": 31.0,
    "shibusdt": 0.000021,
    "dotusdt": 6.3,
    "linkusdt": 15.2,
    "bchusdt": 410.0,
    "ltcusdt": 82.0,
    "nearusdt": 5.1,
    "maticusdt": 0.52,
    "uniusdt": 8.4,
    "atomusdt": 7.9,
    "xlmusdt": 0.11,
    "etcusdt": 24.0,
    "filusdt": 4.8,
    "aptusdt": 9.1,
    "arbusdt": 0.79,
    "opusdt": 1.8,
    "injusdt": 24.5,
    "pepeusdt": 0.0000105,
    "suiusdt": 1.45,
    "aaveusdt": 152.0,
    "ethbtc": 0.0335,
}

# (period in seconds, amplitude of the log-price at that scale): ~1-2% a day, visible each second.
_SCALES = ((1.0, 0.0004), (60.0, 0.002), (3_600.0, 0.01))
DEVIATION = 0.0005  # each exchange quotes within +-0.05% of the shared price
_NORMAL = NormalDist()


def uniform(*parts: object) -> float:
    """A reproducible number in (0, 1) for the given parts."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


@functools.cache
def reference_price(symbol: str) -> float:
    """The price level a symbol trades around: real magnitudes for real pairs, spread otherwise."""
    if symbol in WELL_KNOWN_PRICES:
        return WELL_KNOWN_PRICES[symbol]
    # Log-uniform ranges by quote currency: sub-cent to thousands against dollars.
    low, high = (
        (1e-7, 1e-2) if symbol.endswith("btc") else (1e-6, 1e-1) if symbol.endswith("eth") else (1e-4, 5e3)
    )
    u = uniform("reference", symbol)
    return float(f"{math.exp(math.log(low) + u * (math.log(high) - math.log(low))):.6g}")


@functools.cache
def _base_volume(symbol: str) -> float:
    return 10 ** (2 + 5 * uniform("volume", symbol))


class Market:
    """Prices for every symbol as a function of (seed, symbol, time)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _noise(self, symbol: str, period: float, t: float) -> float:
        step, frac = divmod(t / period, 1.0)
        a = _NORMAL.inv_cdf(uniform(self.seed, symbol, period, int(step)))
        b = _NORMAL.inv_cdf(uniform(self.seed, symbol, period, int(step) + 1))
        smooth = frac * frac * (3 - 2 * frac)
        return a + (b - a) * smooth

    def wander(self, key: str, t: float) -> float:
        """The log-move of path ``key`` from its level at unix time ``t`` (about +-1 %)."""
        return sum(amp * self._noise(key, period, t) for period, amp in _SCALES)

    def price(self, symbol: str, t: float) -> float:
        """The shared price of ``symbol`` at unix time ``t`` on its own path."""
        return reference_price(symbol) * math.exp(self.wander(symbol, t))

    def quote(
        self, exchange: str, symbol: str, t: float, *, shared: float | None = None
    ) -> tuple[float, float]:
        """(price, volume) that ``exchange`` quotes for ``symbol`` at time ``t``: its own small
        deviation from the shared price (``shared``, or else the symbol's own path)."""
        second = int(t)
        deviation = (2 * uniform(self.seed, exchange, symbol, second) - 1) * DEVIATION
        price = (self.price(symbol, t) if shared is None else shared) * (1 + deviation)
        volume = _base_volume(symbol) * (0.5 + uniform(self.seed, exchange, "vol", symbol, second))
        return price, round(volume, 4)
