"""Realistic universes: what each venue lists, as a pure function of the venue and a size.

Every venue draws from one market of base assets (the real coins first, then synthetic codes)
against the quote currencies USD, USDT, USDC, EUR, BTC and ETH. A pair's standing on a venue is
the base's popularity (falling with its rank), times how readily that venue quotes in that
currency (its flavour: Coinbase and Kraken are dollar and euro venues, Binance, OKX and Bybit
stablecoin ones), times the venue's own taste for the base and for the pair; the venue lists its
``size`` best pairs. Popular pairs are therefore listed nearly everywhere and the tail by one
venue or two. At the default size two venues share about 60 % of their pairs (on average over
the ten couples of venues: about 74 % within Binance, OKX and Bybit or within Coinbase and
Kraken, about 50 % across), about 64 % of all the pairs are listed by two venues or more, and
about one pair in seven of a venue's listing is its own alone. Each venue also lists its
stablecoin and fiat markets (USDT/USD and USDC/USD on Coinbase and Kraken, USDC/USDT and
EUR/USDT on Binance...) and BTC and ETH in every quote currency.
"""

from __future__ import annotations

import functools
import itertools
import math
import string
from collections.abc import Iterator, Mapping
from statistics import NormalDist

from mockex.assets import NAMED_ASSETS, NAMED_BASES
from mockex.market import uniform
from mockex.symbols import split_symbol

__all__ = ["DEFAULT_SIZE", "MAX_SIZE", "QUOTES", "VENUES", "realistic_markets", "synthetic_bases"]

DEFAULT_SIZE = 1_500
MAX_SIZE = 20_000
QUOTES = ("usd", "usdt", "usdc", "eur", "btc", "eth")

# How readily each venue lists a base against each quote currency (1.0: its main one).
_FLAVOURS: Mapping[str, Mapping[str, float]] = {
    "binance": {"usdt": 1.0, "usdc": 0.6, "btc": 0.4, "eth": 0.2, "eur": 0.08, "usd": 0.02},
    "okx": {"usdt": 1.0, "usdc": 0.6, "btc": 0.3, "eth": 0.15, "eur": 0.06, "usd": 0.04},
    "bybit": {"usdt": 1.0, "usdc": 0.5, "btc": 0.2, "eth": 0.1, "eur": 0.06, "usd": 0.02},
    "coinbase": {"usd": 1.0, "usdt": 0.6, "usdc": 0.4, "eur": 0.3, "btc": 0.3, "eth": 0.12},
    "kraken": {"usd": 1.0, "eur": 0.65, "usdt": 0.55, "usdc": 0.4, "btc": 0.3, "eth": 0.15},
}
VENUES = tuple(_FLAVOURS)
# Markets between the currencies themselves, which every listing of that venue holds.
_CURRENCY_MARKETS: Mapping[str, tuple[str, ...]] = {
    "binance": ("usdcusdt", "eurusdt", "eurusdc"),
    "okx": ("usdcusdt", "usdteur", "usdceur"),
    "bybit": ("usdcusdt", "eurusdt"),
    "coinbase": ("usdtusd", "usdcusd", "usdteur", "usdcusdt"),
    "kraken": ("usdtusd", "usdcusd", "eurusd", "usdteur", "usdceur", "usdcusdt"),
}
# BTC and ETH against every quote currency (no BTC in ETH): every currency is on every venue.
_FLAGSHIPS = tuple(
    f"{base}{quote}" for base in ("btc", "eth") for quote in QUOTES if quote not in (base, "eth")
)
# Popularity falls as (rank + _RANK_OFFSET) ** -_POPULARITY_DECAY.
_RANK_OFFSET = 5
_POPULARITY_DECAY = 1.1
# Spread (log scale) of a venue's taste for a base, and for one pair of it: the overlap knob.
_BASE_TASTE = 0.4
_PAIR_TASTE = 0.3
# Synthetic bases in the pool per pair a venue lists: enough for the tail of every venue.
_BASES_PER_PAIR = 1.5
_NORMAL = NormalDist()
# Kraken's own asset codes, which a synthetic base must not take.
_RESERVED = frozenset({"xbt", "xdg", "xxbt", "xeth", "xxdg", "xltc", "xxrp", "zusd", "zeur"})


def _code(index: int) -> str:
    """The ``index``-th candidate code: 3 to 5 letters, fixed by the index alone."""
    length = 3 + int(uniform("base length", index) * 3)
    letters = string.ascii_lowercase
    return "".join(letters[int(uniform("base letter", index, i) * 26)] for i in range(length))


def _fits(code: str) -> bool:
    # A code splits back out of every pair it is in (no ``...b`` + ``usd`` read as BUSD).
    return (
        code not in NAMED_ASSETS
        and code not in _RESERVED
        and all(split_symbol(code + quote) == (code.upper(), quote.upper()) for quote in QUOTES)
    )


def _synthetic_codes() -> Iterator[str]:
    seen: set[str] = set()
    for index in itertools.count():
        code = _code(index)
        if code not in seen and _fits(code):
            seen.add(code)
            yield code


@functools.cache
def synthetic_bases(count: int) -> tuple[str, ...]:
    """The first ``count`` synthetic base codes, the same in every process."""
    return tuple(itertools.islice(_synthetic_codes(), count))


def _bases(size: int) -> tuple[str, ...]:
    return NAMED_BASES + synthetic_bases(math.ceil(size * _BASES_PER_PAIR))


def _taste(*parts: object) -> float:
    return _NORMAL.inv_cdf(uniform("universe", *parts))


def _candidates(venue: str, size: int) -> Iterator[tuple[float, str]]:
    """(log standing, symbol) of every pair the venue could list."""
    flavour = _FLAVOURS[venue]
    for rank, base in enumerate(_bases(size)):
        standing = -_POPULARITY_DECAY * math.log(rank + _RANK_OFFSET) + _BASE_TASTE * _taste(venue, base)
        for quote in QUOTES:
            if base == quote or (base, quote) == ("btc", "eth"):
                continue
            symbol = base + quote
            yield standing + math.log(flavour[quote]) + _PAIR_TASTE * _taste(venue, symbol), symbol


@functools.cache
def realistic_markets(venue: str, size: int = DEFAULT_SIZE) -> tuple[str, ...]:
    """The ``size`` pairs (our symbols: lowercase base + quote) ``venue`` lists in a realistic
    universe, its most prominent first; the same in every process. ValueError for a venue not
    in VENUES or a size outside 1..MAX_SIZE."""
    if venue not in _FLAVOURS:
        raise ValueError(f"no realistic universe for venue {venue!r}: one of {list(VENUES)}")
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"a universe size must be 1 to {MAX_SIZE}")
    fixed = tuple(dict.fromkeys(_FLAGSHIPS[:2] + _CURRENCY_MARKETS[venue] + _FLAGSHIPS[2:]))
    ranked = sorted(_candidates(venue, size), reverse=True)
    chosen = dict.fromkeys(fixed[:size])
    for _, symbol in ranked:
        if len(chosen) >= size:
            break
        chosen[symbol] = None
    # Best pairs first; the currency markets, which have no standing, ahead of them all.
    standing = {symbol: index for index, (_, symbol) in enumerate(ranked)}
    return tuple(sorted(chosen, key=lambda s: standing.get(s, -1)))
