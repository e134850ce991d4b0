"""Which shared price a pair has: its assets' US-dollar values divided, or a path of its own.

Every asset has a USD value at every instant. The dollar stablecoins hold 1.0 and the euro 1.08
(wandering a tenth as much as a coin), unless a venue's pegs say otherwise (a depeg fault). Any
other asset is worth what its ``{asset}usdt`` path says: the path the symbols file's USDT pairs
have always followed, so that ``btcusdt`` keeps its price to the bit while USDT holds its peg,
and ``btcusd``, ``btceur`` and ``ethbtc`` agree with it (triangular consistency).

The exception is the symbols file's other pairs quoted in anything but USDT (all but ``ethbtc``
of the well-known list are USDT pairs): their levels were drawn pair by pair
(``mockex.market.reference_price``), so dividing USD values would move prices the tests pin;
those keep their own paths and do not follow the pegs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from mockex.assets import FIXED_USD_LEVELS
from mockex.market import WELL_KNOWN_PRICES, Market
from mockex.symbols import split_symbol

__all__ = ["keeps_own_path", "own_paths", "pair_price", "usd_value"]

# The euro's log-move is this share of a coin's: it wanders by about 0.1 % rather than 1 %.
_EUR_WANDER = 0.1
_NO_PEGS: Mapping[str, float] = {}


def usd_value(market: Market, asset: str, t: float, pegs: Mapping[str, float] = _NO_PEGS) -> float:
    """What one unit of ``asset`` (any case) is worth in US dollars at unix time ``t``."""
    code = asset.lower()
    if code in pegs:
        return pegs[code]
    if code == "eur":
        return FIXED_USD_LEVELS["eur"] * math.exp(_EUR_WANDER * market.wander("eurusd", t))
    if code in FIXED_USD_LEVELS:
        return FIXED_USD_LEVELS[code]
    return market.price(f"{code}usdt", t)


def pair_price(market: Market, symbol: str, t: float, pegs: Mapping[str, float] = _NO_PEGS) -> float:
    """The shared price of ``symbol`` (base in quote) from its assets' USD values."""
    base, quote = split_symbol(symbol)
    return usd_value(market, base, t, pegs) / usd_value(market, quote, t, pegs)


def keeps_own_path(symbol: str) -> bool:
    """Whether ``symbol``, as a pair of the symbols file, keeps its own path (see the module)."""
    return symbol not in WELL_KNOWN_PRICES and split_symbol(symbol)[1] != "USDT"


def own_paths(symbols: Iterable[str]) -> frozenset[str]:
    """The pairs of a symbols file that keep their own paths."""
    return frozenset(s for s in symbols if keeps_own_path(s))
