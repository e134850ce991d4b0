"""Venue personalities: mockex speaking a real venue's wire format (paths, field names, string
numbers, envelopes, error codes and rate-limit answers) over the same moving market and faults.

Each venue module defines a ``Personality``: how it names a symbol, and how it shapes a listing,
tickers, an error envelope and its rate-limit answer. ``routes`` wires one onto an app.
"""

from __future__ import annotations

from mockex.venues.base import Personality
from mockex.venues.binance import Binance
from mockex.venues.bybit import Bybit
from mockex.venues.coinbase import Coinbase
from mockex.venues.kraken import Kraken
from mockex.venues.okx import Okx

__all__ = ["PERSONALITIES", "Personality"]

PERSONALITIES: dict[str, type[Personality]] = {p.name: p for p in (Binance, Okx, Bybit, Kraken, Coinbase)}
