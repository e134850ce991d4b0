"""What price-oracle users ask beyond the latest price, as pure functions over history.

Every rule here is the one the API documents (README "Oracle answers"):

- **in force at T**: the latest record at or before T. A price holds from its record's timestamp
  until the next record; nothing is interpolated.
- **TWAP** over [start, end]: each price weighted by how long it held inside the window; the
  price in force at ``start`` counts from ``start``; time before the first price known is not
  covered and the average is over the covered time only (``coverage`` says how much that is).
- **EMA** with time-based decay: after ``dt`` seconds a new price moves the average by
  ``alpha = 1 - exp(-dt / tau)``, ``tau = half_life / ln 2``, so irregular intervals weigh as long
  as they lasted and a price held for one half-life moves the average half-way to it.
- **change**: the price now against the record in force at ``now - period``, both timestamps
  reported, never rescaled to the period.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Point", "Twap", "ema_step", "in_force", "relative_change", "time_weighted_average"]

# A price and the unix second from which it holds.
Point = tuple[int, float]


def in_force(points: Sequence[Point], at: int) -> Point | None:
    """The point in force at ``at``: the latest at or before it; None when all are after.
    ``points`` are sorted by time."""
    index = bisect.bisect_right(points, at, key=lambda point: point[0])
    return points[index - 1] if index else None


@dataclass(frozen=True, slots=True)
class Twap:
    price: float
    covered_seconds: int
    window_seconds: int
    points: int  # the points that held inside the window

    @property
    def coverage(self) -> float:
        return self.covered_seconds / self.window_seconds if self.window_seconds else 0.0


def time_weighted_average(points: Sequence[Point], start: int, end: int) -> Twap | None:
    """The TWAP of ``points`` (sorted by time) over [start, end]; None when no price holds in it."""
    if end <= start:
        raise ValueError("the window must end after it starts")
    first = bisect.bisect_right(points, start, key=lambda point: point[0])
    held = [(start, points[first - 1][1])] if first else []
    held += [point for point in points[first:] if point[0] < end]
    if not held:
        return None
    weighted = 0.0
    for (since, price), (until, _) in zip(held, [*held[1:], (end, 0.0)], strict=True):
        weighted += price * (until - since)
    covered = end - held[0][0]
    prices = [price for _, price in held]
    # Summing can leave the mean a hair outside the prices it averages; it never is in truth.
    average = min(max(weighted / covered, min(prices)), max(prices))
    return Twap(price=average, covered_seconds=covered, window_seconds=end - start, points=len(held))


def ema_step(previous: float | None, previous_at: float, price: float, at: float, half_life: float) -> float:
    """The EMA after ``price`` arrives at ``at``, from ``previous`` (None: the first price) at
    ``previous_at``. A price arriving no later than the previous one replaces nothing."""
    if previous is None or half_life <= 0:
        return price
    dt = at - previous_at
    if dt <= 0:
        return previous
    alpha = -math.expm1(-dt * math.log(2) / half_life)
    moved = previous + alpha * (price - previous)
    # Always between the two in truth; rounding must not carry it past either.
    return min(max(moved, min(previous, price)), max(previous, price))


def relative_change(before: float, now: float) -> float | None:
    """(now - before) / before; None when ``before`` is not a positive price."""
    if not before > 0:
        return None
    return (now - before) / before
