"""One mock exchange's mutable state: its market, faults, pegs, pinned quotes and traffic counts."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mockex.faults import GARBAGE_KINDS, Faults
from mockex.market import Market
from mockex.pricing import pair_price
from mockex.symbols import SymbolList

__all__ = ["Exchange"]


def _price_token(good: dict[str, Any], token: bytes) -> bytes:
    # orjson refuses to write NaN or Infinity, so the token is spliced into the encoded quote.
    return orjson.dumps(good).replace(orjson.dumps(good["price"]), token, 1)


# How each garbage kind spoils one honest quote, given the symbol that was asked for.
# Overriding an existing key keeps its place, so the field order matches an honest answer.
_SPOILERS: dict[str, Callable[[dict[str, Any], str], bytes]] = {
    "not_json": lambda good, symbol: b"<html>502 upstream hiccup</html>",
    "not_object": lambda good, symbol: orjson.dumps([good]),
    "wrong_symbol": lambda good, symbol: orjson.dumps({**good, "symbol": "notthis" + symbol}),
    "string_price": lambda good, symbol: orjson.dumps({**good, "price": f"{good['price']}"}),
    "nan_price": lambda good, symbol: _price_token(good, b"NaN"),
    "negative_price": lambda good, symbol: orjson.dumps({**good, "price": -good["price"]}),
    "zero_price": lambda good, symbol: orjson.dumps({**good, "price": 0}),
    "negative_volume": lambda good, symbol: orjson.dumps({**good, "volume": -1.0}),
    "missing_fields": lambda good, symbol: orjson.dumps(
        {key: value for key, value in good.items() if key not in ("price", "volume")}
    ),
    "infinity_price": lambda good, symbol: _price_token(good, b"Infinity"),
    "string_volume": lambda good, symbol: orjson.dumps({**good, "volume": "lots"}),
}


@dataclass(kw_only=True)
class Exchange:
    """One exchange's mutable state: its faults, pegs, pinned quotes and traffic counts."""

    name: str
    symbols: SymbolList
    market: Market
    # What a venue personality lists (real venues do not list everything); all by default.
    listed: SymbolList | None = None
    # Pairs priced on their own paths rather than from USD values (mockex.pricing's rule).
    own_paths: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.time
    faults: Faults = field(default_factory=Faults)
    # This venue's USD value of a currency, where a depeg fault moved it off its level.
    pegs: dict[str, float] = field(default_factory=dict)
    pinned: dict[str, dict[str, float]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)
    # Venue personalities: requests, rate-limit answers sent, and request weight this minute.
    venue_requests: int = 0
    rate_limited_answers: int = 0
    # Quote requests being answered now, and the most at once since the stats were reset: how a
    # test sees a client's concurrency cap from the exchange's side.
    in_flight: int = 0
    most_in_flight: int = 0
    # Set unless the mode is ``held``: held requests wait for it.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.released.set()

    def set_faults(self, faults: Faults) -> None:
        """Apply ``faults``; leaving mode ``held`` answers every request it held."""
        self.faults = faults
        if faults.mode == "held":
            self.released.clear()
        else:
            self.released.set()

    weight_minute: int = 0
    weight_in_minute: int = 0
    _garbage_cycle: itertools.cycle[str] = field(default_factory=lambda: itertools.cycle(GARBAGE_KINDS))

    def quote(self, symbol: str) -> dict[str, Any]:
        now = self.clock()
        pin = self.pinned.get(symbol)
        if pin is not None:
            price = pin["price"]
            volume = pin.get("volume", 1.0)
            timestamp = int(pin.get("timestamp", now))
        else:
            price, volume = self.market.quote(self.name, symbol, now, shared=self.shared_price(symbol, now))
            timestamp = int(now)
        if self.faults.mode == "outlier":
            price *= self.faults.price_factor
        return {"symbol": symbol, "price": price, "volume": volume, "timestamp": timestamp}

    def list_only(self, listed: SymbolList) -> None:
        """List exactly ``listed`` from now on; symbols it did not know yet are quoted too."""
        self.symbols = self.symbols.union(listed.ordered)
        self.listed = listed

    def shared_price(self, symbol: str, t: float) -> float:
        """The price this venue deviates from for ``symbol``: its own path, or its USD values."""
        if symbol in self.own_paths:
            return self.market.price(symbol, t)
        return pair_price(self.market, symbol, t, self.pegs)

    def garbage_kind(self) -> str:
        return self.faults.garbage_kind or next(self._garbage_cycle)

    def garbage(self, symbol: str, kind: str) -> bytes:
        good = self.quote(symbol)
        spoil = _SPOILERS.get(kind)
        # The answer kinds are spoiled by the HTTP layer around an honest quote.
        return orjson.dumps(good) if spoil is None else spoil(good, symbol)

    def weight_used(self, weight: int) -> int:
        """Count ``weight`` against this minute's budget; the minute's total so far."""
        minute = int(self.clock() // 60)
        if minute != self.weight_minute:
            self.weight_minute, self.weight_in_minute = minute, 0
        self.weight_in_minute += weight
        return self.weight_in_minute
