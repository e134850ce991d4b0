"""Waiting between retries: exponential delays from ``first`` doubling up to ``cap``.

With ``jitter`` each delay is drawn uniformly from zero to the exponential one ("full jitter"),
so that many peers cut off at once do not all come back at once (redis-py's ``backoff.py`` and
the AWS architecture blog's analysis make the same choice). One helper for every retry loop.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """The delays of one retry loop: :meth:`next` after each failure, :meth:`reset` after a
    success."""

    def __init__(
        self, *, first: float, cap: float, jitter: bool = False, rng: random.Random | None = None
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError("a backoff needs 0 < first <= cap")
        self.first = first
        self.cap = cap
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._current = first

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long, up to the cap."""
        delay = self._current
        self._current = min(self._current * 2, self.cap)
        return self._rng.uniform(0, delay) if self._jitter else delay

    def reset(self) -> None:
        self._current = self.first

    @property
    def at_cap(self) -> bool:
        """Whether the delays have grown to the cap (the peer has been away a while)."""
        return self._current >= self.cap
