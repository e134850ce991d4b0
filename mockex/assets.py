"""The assets mockex knows by name: the real coins of the well-known list, and the currencies
whose US-dollar value stands still (dollar stablecoins, the euro) unless a test moves it."""

from __future__ import annotations

from mockex.market import WELL_KNOWN_PRICES

__all__ = ["FIXED_USD_LEVELS", "NAMED_ASSETS", "NAMED_BASES", "PEGGABLE"]

# Real coins in market-cap order, as the well-known list quotes them against USDT.
NAMED_BASES = tuple(symbol.removesuffix("usdt") for symbol in WELL_KNOWN_PRICES if symbol.endswith("usdt"))
# What one unit is worth in US dollars; the euro's value also wanders a little (mockex.pricing).
FIXED_USD_LEVELS = {"usd": 1.0, "usdt": 1.0, "usdc": 1.0, "busd": 1.0, "eur": 1.08}
# Currencies a test may depeg (POST /mock/admin/pegs); the dollar is the unit, so it is not one.
PEGGABLE = tuple(code for code in FIXED_USD_LEVELS if code != "usd")
NAMED_ASSETS = frozenset(NAMED_BASES) | FIXED_USD_LEVELS.keys()
