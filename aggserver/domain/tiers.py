"""Cadence: which assets are refreshed how often (tiers, promotion by traffic), and which of their
aggregates become history records (the deviation and heartbeat gate)."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggserver.settings import Settings

__all__ = ["STALE_GRACE_SECONDS", "HistoryGate", "Popularity", "Tier", "TierMap"]

# A price is stale once it is older than its tier's interval plus this: quotes carry whole
# seconds, and a refresh itself takes a moment.
STALE_GRACE_SECONDS = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    name: str
    interval: float
    ttl: int

    def is_stale(self, age_seconds: float) -> bool:
        return age_seconds > self.interval + STALE_GRACE_SECONDS


class TierMap:
    """The base tier of every asset by its rank in the universe (symbols.csv's order, or the
    venues' universe ranked), plus assets promoted to hot."""

    def __init__(self, symbols: Sequence[str], settings: Settings) -> None:
        def tier(name: str, interval: float) -> Tier:
            # Longer than the interval, so a healthy system never lets a price expire.
            return Tier(
                name=name, interval=interval, ttl=max(settings.cache_ttl_seconds, math.ceil(2 * interval) + 1)
            )

        self.hot = tier("hot", settings.hot_interval_seconds)
        self.medium = tier("medium", settings.medium_interval_seconds)
        self.cold = tier("cold", settings.cold_interval_seconds)
        self.by_name = {t.name: t for t in (self.hot, self.medium, self.cold)}
        self._hot_end = settings.hot_assets
        self._medium_end = settings.hot_assets + settings.medium_assets
        self.promoted: set[str] = set()
        self.assign(symbols)

    def assign(self, symbols: Sequence[str]) -> None:
        """Rank ``symbols`` afresh (the universe changed at a listing reload)."""
        self._base = {
            symbol: self.hot if i < self._hot_end else self.medium if i < self._medium_end else self.cold
            for i, symbol in enumerate(symbols)
        }
        self._members = {
            t.name: [s for s in symbols if self._base[s] is t] for t in (self.hot, self.medium, self.cold)
        }
        self.promoted &= self._base.keys()

    def of(self, asset: str) -> Tier:
        # An asset the universe has just dropped is still stored once more as cold.
        return self.hot if asset in self.promoted else self._base.get(asset, self.cold)

    def members(self, tier: Tier) -> list[str]:
        """Assets refreshed at ``tier``'s cadence right now."""
        if tier is self.hot:
            return self._members["hot"] + sorted(self.promoted)
        return [s for s in self._members[tier.name] if s not in self.promoted]


class Popularity:
    """GET traffic per asset as an exponentially decayed rate, and who should be hot because of it.

    ``hit`` is all the request path pays (one counter increment); the rest runs once a second.
    """

    def __init__(
        self,
        *,
        promote_rate: float,
        max_promoted: int,
        half_life_seconds: float = 5.0,
        demote_after_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts: Counter[str] = Counter()
        self._rates: dict[str, float] = {}
        self._promote_rate = promote_rate
        self._max_promoted = max_promoted
        self._half_life = half_life_seconds
        self._demote_after = demote_after_seconds
        self._clock = clock
        self._last = clock()
        self._quiet_since: dict[str, float] = {}

    def hit(self, asset: str) -> None:
        self._counts[asset] += 1

    def update(self, tiers: TierMap) -> list[str]:
        """Fold the counts in, promote busy assets and demote idle ones; returns new promotions."""
        now = self._clock()
        elapsed = max(now - self._last, 1e-3)
        self._last = now
        decay = 0.5 ** (elapsed / self._half_life)
        counts, self._counts = self._counts, Counter()
        rates = {a: r * decay for a, r in self._rates.items() if r * decay > 0.01}
        for asset, count in counts.items():
            # Blend the latest window's rate in with the weight the decay left free.
            rates[asset] = rates.get(asset, 0.0) + (1 - decay) * count / elapsed
        self._rates = rates

        for asset in list(tiers.promoted):
            if rates.get(asset, 0.0) >= self._promote_rate / 4:
                self._quiet_since.pop(asset, None)
            elif now - self._quiet_since.setdefault(asset, now) >= self._demote_after:
                tiers.promoted.discard(asset)
                del self._quiet_since[asset]

        candidates = sorted(
            (a for a, r in rates.items() if r >= self._promote_rate and tiers.of(a) is not tiers.hot),
            key=lambda a: -rates[a],
        )
        room = max(0, self._max_promoted - len(tiers.promoted))
        promoted = candidates[:room]
        tiers.promoted.update(promoted)
        return promoted


class HistoryGate:
    """Deviation + heartbeat, as price oracles publish: record an aggregate only when it moved
    more than ``deviation`` (relative) since the last record of the asset, or when
    ``heartbeat_seconds`` passed since then. A deviation of 0 records every aggregate."""

    def __init__(self, *, deviation: float, heartbeat_seconds: float) -> None:
        self._deviation = deviation
        self._heartbeat = heartbeat_seconds
        self._last: dict[str, tuple[float, float]] = {}

    def should_record(self, asset: str, price: float, now: float) -> bool:
        if self._deviation <= 0:
            return True
        last = self._last.get(asset)
        if last is not None:
            last_price, last_time = last
            if abs(price / last_price - 1) <= self._deviation and now - last_time < self._heartbeat:
                return False
        self._last[asset] = (price, now)
        return True
