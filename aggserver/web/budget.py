"""A fair share for every client: each request spends from its client's budget by its cost.

A single price read costs 1, a batch its asset count, a history page its ``limit``, a candle
request its candles, a stream its assets. Budgets refill at ``rate`` units a second up to
``burst``; a request that finds too little is refused with 429 and the seconds until it would
fit. The client is the peer address, or, when the peer is a configured trusted proxy, the
nearest address in ``X-Forwarded-For`` that is not one of them.

Hand-written rather than an aiolimiter per client: the price route pays a dict lookup and a
little arithmetic, and idle clients are forgotten without a task per bucket.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Collection

from aiohttp import web

from aggserver.errors import OverBudget
from aggserver.web.keys import BUDGETS

__all__ = ["ClientBudgets", "TokenBucket", "charge"]

# Past this many remembered clients, full (idle) buckets are forgotten.
PRUNE_ABOVE = 10_000


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; starts full."""

    __slots__ = ("_burst", "_rate", "then", "tokens")

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self.tokens = burst
        self.then = now

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` (at most the burst) and return 0, or take nothing and return the
        seconds until it would fit."""
        self.tokens = min(self._burst, self.tokens + (now - self.then) * self._rate)
        self.then = now
        needed = min(cost, self._burst)  # dearer than the whole burst: passes once it is full
        if self.tokens < needed:
            return (needed - self.tokens) / self._rate
        self.tokens -= needed
        return 0.0

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.then) * self._rate >= self._burst


class ClientBudgets:
    """Per-client token buckets; ``rate`` 0 turns them off."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        exempt: Collection[str] = (),
        trusted_proxies: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = rate > 0
        self._rate = rate
        self._burst = max(burst, 1.0)
        self._exempt = frozenset(exempt)
        self._proxies = frozenset(trusted_proxies)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self.refused: Counter[str] = Counter()  # by route

    def client(self, request: web.Request) -> str:
        """Who is asking: the peer, or behind a trusted proxy the address it forwarded."""
        peer = request.remote or ""
        if peer not in self._proxies:
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if hop not in self._proxies:
                return hop
        return peer

    def spend(self, request: web.Request, cost: float, route: str) -> None:
        """Take ``cost`` from the client's budget, or raise OverBudget (nothing is taken then)."""
        if not self.enabled:
            return
        who = self.client(request) if self._proxies else (request.remote or "")
        if who in self._exempt:
            return
        now = self._clock()
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[who] = TokenBucket(rate=self._rate, burst=self._burst, now=now)
        # TokenBucket.take inlined for the common case (enough tokens): this runs on every GET.
        tokens = bucket.tokens + (now - bucket.then) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket.then = now
        if tokens >= cost:
            bucket.tokens = tokens - cost
            return
        bucket.tokens = tokens
        wait = bucket.take(cost, now)
        if wait:
            self.refused[route] += 1
            raise OverBudget(retry_after=math.ceil(wait))

    def _prune(self, now: float) -> None:
        for who in [w for w, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[who]


def charge(request: web.Request, cost: float, route: str) -> None:
    """Spend what a request costs beyond the 1 its route already took (a batch's assets, a
    history page's records...); OverBudget when the client cannot afford it."""
    budgets = request.app[BUDGETS]
    if budgets.enabled and cost > 1:
        budgets.spend(request, cost - 1, route)
