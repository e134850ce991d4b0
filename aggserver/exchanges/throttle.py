"""Staying inside a venue's rate limits: a budget per window, and a stop when the venue says so.

A real venue bans an IP that ignores its limits (Binance answers 418 after ignored 429s), so
requests wait for budget, and once a venue has said "too many" nothing more is sent to it until
its ``Retry-After`` has passed, or, when it gave none, for an exponentially growing pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.process.backoff import Backoff
from aggserver.venues.base import RatePolicy

__all__ = ["Held", "Throttle"]

BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
# Work that can wait (medium and cold assets) leaves this share of the budget to hot assets.
URGENT_RESERVE = 0.25


class Held(Exception):
    """A request that was not sent: the venue asked us to wait, or the budget is spent."""

    @property
    def rejection(self) -> QuoteRejected:
        return QuoteRejected(ReasonCode.RATE_LIMITED, str(self))


class Throttle:
    """One venue's request budget (``capacity`` units per ``window_seconds``) and its stops."""

    def __init__(
        self,
        name: str,
        *,
        capacity: float,
        window_seconds: float,
        share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._clock = clock
        self._share = share
        self.set_budget(capacity, window_seconds)
        self.blocked_until = 0.0
        self._backoff = Backoff(first=BACKOFF_FIRST_SECONDS, cap=BACKOFF_MAX_SECONDS)
        self.rate_limited = 0  # answers in which the venue said "too many"
        self.held = 0  # requests not sent because of a stop or a spent budget

    def set_budget(self, capacity: float, window_seconds: float) -> None:
        """Use ``share`` of ``capacity`` per window: the window is stretched rather than the
        capacity cut, so one request of the largest weight still fits."""
        self.capacity = capacity
        self.window_seconds = window_seconds
        self._limiter = AsyncLimiter(capacity, window_seconds / self._share)

    @property
    def budget(self) -> RatePolicy:
        return RatePolicy(capacity=self.capacity, window_seconds=self.window_seconds)

    def blocked_for(self) -> float:
        """Seconds until requests may go out again (0 when they may now)."""
        return max(0.0, self.blocked_until - self._clock())

    async def acquire(self, weight: float, *, urgent: bool) -> None:
        """Wait for ``weight`` of budget; Held when the venue is stopped, or when the budget is
        short and the work is not urgent."""
        waiting = self.blocked_for()
        if waiting > 0:
            self.held += 1
            raise Held(f"rate limited: no requests for another {waiting:.0f} s")
        weight = min(weight, self.capacity)
        if not urgent and not self._limiter.has_capacity(weight + self.capacity * URGENT_RESERVE):
            self.held += 1
            raise Held("rate budget kept for hot assets")
        await self._limiter.acquire(weight)

    def limited(self, retry_after: float | None) -> float:
        """The venue said "too many": stop for ``retry_after`` seconds, or back off
        exponentially when it gave none. Returns the pause."""
        self.rate_limited += 1
        pause = self._backoff.next() if retry_after is None else retry_after
        self.blocked_until = max(self.blocked_until, self._clock() + pause)
        return pause

    def nearly_spent(self, seconds_left_in_window: float) -> None:
        """The venue reports the window's budget (almost) used: pause until the window turns."""
        self.blocked_until = max(self.blocked_until, self._clock() + seconds_left_in_window)

    def answered(self) -> None:
        """A normal answer: the exponential pause starts from the beginning next time."""
        self._backoff.reset()
