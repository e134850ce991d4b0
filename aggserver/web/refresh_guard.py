"""Keeping POST /refresh from being an amplifier: each call can cost three exchange requests.

An optional bearer token (compared in constant time), a minimum interval per asset (a refresh
asked for inside it is answered from the price just stored, without calling the exchanges), and
a global rate of real refreshes beyond which callers get 429 with Retry-After.
"""

from __future__ import annotations

import hmac

from aiolimiter import AsyncLimiter

from aggserver.domain.price import CachedPrice
from aggserver.errors import TooManyRefreshes, Unauthorized

__all__ = ["RefreshGuard"]


class RefreshGuard:
    def __init__(self, *, token: str | None, min_interval: float, rate: float) -> None:
        self._token = token.encode() if token else None
        self.min_interval = min_interval
        # A bucket of one second's worth: a burst up to the rate passes, then the rate holds.
        self._limiter = AsyncLimiter(rate, 1.0) if rate > 0 else None
        self.refused = 0

    def authorize(self, header: str | None) -> None:
        """Unauthorized unless no token is configured or ``header`` is ``Bearer <token>``."""
        if self._token is None:
            return
        scheme, _, given = (header or "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)):
            raise Unauthorized()

    def recent(self, price: CachedPrice | None, now: float) -> bool:
        """Whether ``price`` was computed less than the minimum interval ago (restored prices never are)."""
        return price is not None and not price.restored and now - price.updated_at < self.min_interval

    async def admit(self) -> None:
        """Take one real refresh from the global rate, or raise TooManyRefreshes."""
        if self._limiter is None:
            return
        if not self._limiter.has_capacity():
            self.refused += 1
            raise TooManyRefreshes()
        await self._limiter.acquire()  # returns at once: there is capacity and nothing ran since
