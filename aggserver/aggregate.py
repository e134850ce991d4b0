"""Pure aggregation: exchange payloads in, one volume-weighted price out. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Aggregate", "InvalidQuote", "Quote", "aggregate", "parse_quote", "volume_weighted_price"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """One exchange's view of one asset."""

    source: str
    symbol: str
    price: float
    volume: float
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """The combined price of one asset: what we cache and record."""

    asset: str
    price: float
    last_updated: int
    sources: int


class InvalidQuote(ValueError):
    """A payload that must not reach the price; the message says why."""


def _finite_number(payload: Mapping[str, object], name: str) -> float:
    value = payload.get(name)
    # bool is an int subclass, and True is no price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidQuote(f"{name} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidQuote(f"{name} is not finite")
    return number


def parse_quote(payload: object, *, source: str, symbol: str) -> Quote:
    """Validate an exchange's decoded JSON for ``symbol``; raise InvalidQuote when unusable."""
    if not isinstance(payload, dict):
        raise InvalidQuote("body is not a JSON object")
    quoted = payload.get("symbol")
    if not isinstance(quoted, str) or quoted.lower() != symbol:
        raise InvalidQuote(f"quote names another symbol: {quoted!r}")
    price = _finite_number(payload, "price")
    if price <= 0:
        raise InvalidQuote("price is not positive")
    volume = _finite_number(payload, "volume")
    if volume < 0:
        raise InvalidQuote("volume is negative")
    timestamp = _finite_number(payload, "timestamp")
    if timestamp <= 0:
        raise InvalidQuote("timestamp is not positive")
    return Quote(source=source, symbol=symbol, price=price, volume=volume, timestamp=int(timestamp))


def volume_weighted_price(quotes: Sequence[Quote]) -> float:
    """The volume-weighted mean of the quotes' prices.

    Falls back to the plain mean when no quote carries volume, so a price still exists when
    every venue reports zero trading. Raises ValueError for no quotes.
    """
    if not quotes:
        raise ValueError("no quotes to aggregate")
    total_volume = math.fsum(q.volume for q in quotes)
    if total_volume > 0 and math.isfinite(total_volume):
        weighted = math.fsum(q.price * (q.volume / total_volume) for q in quotes)
    else:
        weighted = math.fsum(q.price for q in quotes) / len(quotes)
    # Rounding can land a hair outside the quotes' range; never report a price no venue quoted.
    return min(max(weighted, min(q.price for q in quotes)), max(q.price for q in quotes))


def aggregate(asset: str, quotes: Iterable[Quote]) -> Aggregate:
    """Combine valid quotes into one Aggregate; ValueError when there are none."""
    accepted = list(quotes)
    return Aggregate(
        asset=asset,
        price=volume_weighted_price(accepted),
        last_updated=max(q.timestamp for q in accepted),
        sources=len(accepted),
    )
