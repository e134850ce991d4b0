"""How fresh every price is right now: the age of each asset's stored price, summarised by tier.

For /status and the dashboard (not the request path): every listed asset's stored value is read back
(MGET in chunks), each price's age taken from its venue time (``last_updated_ms`` where venues
give milliseconds, else ``last_updated``), and the percentiles computed, at most once every
``SUMMARY_SECONDS`` per process however often it is asked. 10,000 assets cost ~30 ms of CPU.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence

import orjson

from aggserver.errors import BackendUnavailable
from aggserver.store.prices import PriceCache

__all__ = ["FreshnessProbe", "price_age", "summarize"]

SUMMARY_SECONDS = 5.0
# How long a caller waits for a new summary before taking the previous one.
WAIT_SECONDS = 1.0
CHUNK = 1000


def price_age(raw: bytes, now: float) -> tuple[str, float]:
    """The tier and age in seconds (at unix time ``now``) of one stored price."""
    fields = orjson.loads(raw)
    moment_ms = fields.get("last_updated_ms") or fields["last_updated"] * 1000
    return str(fields.get("refresh_tier", "cold")), max(0.0, now - moment_ms / 1000)


def summarize(ages: Sequence[float], missing: int = 0) -> dict[str, float | int | None]:
    """Count and nearest-rank percentiles (p50, p99, max) of ``ages``; None without any."""
    ordered = sorted(ages)

    def rank(share: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 3)

    return {
        "assets": len(ordered),
        "missing": missing,
        "p50_seconds": rank(0.5),
        "p99_seconds": rank(0.99),
        "max_seconds": rank(1.0),
    }


class FreshnessProbe:
    def __init__(
        self,
        cache: PriceCache,
        symbols: Iterable[str],
        *,
        listed: Callable[[str], bool] = lambda _: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``listed``: whether any exchange lists a symbol (the others are not counted)."""
        self._cache = cache
        self._symbols = symbols
        self._listed = listed
        self._clock = clock
        self._last: tuple[float, dict[str, object] | None] | None = None
        self._running: asyncio.Task[dict[str, object] | None] | None = None

    async def summary(self) -> dict[str, object] | None:
        """Every asset's age now, overall and by tier; None while Redis does not answer."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < SUMMARY_SECONDS:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._measure())
            self._running.add_done_callback(lambda _: setattr(self, "_running", None))
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                return await asyncio.shield(self._running)
        except TimeoutError:
            # A slow Redis must not hold /status up: the last summary meanwhile.
            return self._last[1] if self._last is not None else None

    async def _measure(self) -> dict[str, object] | None:
        ages: list[float] = []
        by_tier: dict[str, list[float]] = {}
        missing = 0
        symbols = [s for s in self._symbols if self._listed(s)]
        try:
            for start in range(0, len(symbols), CHUNK):
                values = await self._cache.get_many(symbols[start : start + CHUNK])
                now = self._clock()
                for raw in values:
                    if raw is None:
                        missing += 1
                        continue
                    tier, age = price_age(raw, now)
                    ages.append(age)
                    by_tier.setdefault(tier, []).append(age)
        except BackendUnavailable:
            result: dict[str, object] | None = None
        else:
            result = {
                **summarize(ages, missing),
                "tiers": {tier: summarize(tier_ages) for tier, tier_ages in sorted(by_tier.items())},
            }
        self._last = (self._clock(), result)
        return result
