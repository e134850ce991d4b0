"""One mock exchange's mutable state: its market, faults, pinned quotes and traffic counts."""

from __future__ import annotations

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
from mockex.symbols import SymbolList

__all__ = ["Exchange"]


@dataclass(kw_only=True)
class Exchange:
    """One exchange's mutable state: its faults, pinned quotes and traffic counts."""

    name: str
    symbols: SymbolList
    market: Market
    # What a venue personality lists (real venues do not list everything); all by default.
    listed: SymbolList | None = None
    clock: Callable[[], float] = time.time
    faults: Faults = field(default_factory=Faults)
    pinned: dict[str, dict[str, float]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)
    # Venue personalities: requests, rate-limit answers sent, and request weight this minute.
    venue_requests: int = 0
    rate_limited_answers: int = 0
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
            price, volume = self.market.quote(self.name, symbol, now)
            timestamp = int(now)
        if self.faults.mode == "outlier":
            price *= self.faults.price_factor
        return {"symbol": symbol, "price": price, "volume": volume, "timestamp": timestamp}

    def garbage_kind(self) -> str:
        return self.faults.garbage_kind or next(self._garbage_cycle)

    def garbage(self, symbol: str, kind: str) -> bytes:
        good = self.quote(symbol)
        if kind == "not_json":
            return b"<html>502 upstream hiccup</html>"
        if kind == "not_object":
            return orjson.dumps([good])
        bad: dict[str, Any] = dict(good)
        if kind == "wrong_symbol":
            bad["symbol"] = "notthis" + symbol
        elif kind == "string_price":
            bad["price"] = f"{good['price']}"
        elif kind == "nan_price":
            return orjson.dumps(bad).replace(orjson.dumps(good["price"]), b"NaN", 1)
        elif kind == "negative_price":
            bad["price"] = -good["price"]
        elif kind == "zero_price":
            bad["price"] = 0
        elif kind == "negative_volume":
            bad["volume"] = -1.0
        elif kind == "missing_fields":
            del bad["price"], bad["volume"]
        elif kind == "infinity_price":
            return orjson.dumps(bad).replace(orjson.dumps(good["price"]), b"Infinity", 1)
        elif kind == "string_volume":
            bad["volume"] = "lots"
        return orjson.dumps(bad)

    def weight_used(self, weight: int) -> int:
        """Count ``weight`` against this minute's budget; the minute's total so far."""
        minute = int(self.clock() // 60)
        if minute != self.weight_minute:
            self.weight_minute, self.weight_in_minute = minute, 0
        self.weight_in_minute += weight
        return self.weight_in_minute
