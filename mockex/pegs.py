"""Depeg faults: a venue's USD value of a stablecoin (or the euro) set off its level at run time.

``POST /mock/admin/pegs {"usdt": 0.97}`` makes every pair quoted in USDT on that venue move
(``btcusdt`` becomes usd(btc) / 0.97) and ``usdtusd`` answer 0.97; ``{"usdt": null}`` or
``DELETE`` gives it back its level.
"""

from __future__ import annotations

import math

from mockex.assets import PEGGABLE

__all__ = ["PegsError", "parse_pegs"]


class PegsError(ValueError):
    """A peg setting that cannot be applied."""


def parse_pegs(body: object) -> dict[str, float | None]:
    """``{"usdt": 0.97, "usdc": null}`` as currency code (lower case) -> USD value, or None where
    the currency goes back to its level."""
    if not isinstance(body, dict):
        raise PegsError('body must be a JSON object such as {"usdt": 0.97}')
    changes: dict[str, float | None] = {}
    for currency, value in body.items():
        code = currency.lower()
        if code not in PEGGABLE:
            raise PegsError(f"{currency!r} is not a currency that can be pegged: one of {list(PEGGABLE)}")
        if value is None:
            changes[code] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise PegsError(f"{currency} must be a number or null")
        elif not (math.isfinite(value) and value > 0):
            raise PegsError(f"{currency} must be a positive finite number")
        else:
            changes[code] = float(value)
    return changes
