"""Refreshing one asset: fetch every exchange, aggregate, cache, queue the history record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aggserver.aggregate import Aggregate, aggregate
from aggserver.cache import PriceCache
from aggserver.errors import NoValidQuotes
from aggserver.exchanges import ExchangeClient
from aggserver.history import HistoryRecord, HistoryWriter

__all__ = ["Refresher"]

log = logging.getLogger(__name__)


class Refresher:
    """The refresh path; cache and history only ever see aggregates of valid quotes."""

    def __init__(
        self,
        *,
        exchanges: ExchangeClient,
        cache: PriceCache,
        history: HistoryWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._exchanges = exchanges
        self._cache = cache
        self._history = history
        self._clock = clock

    async def refresh(self, asset: str) -> Aggregate:
        """Fetch, aggregate and store ``asset``; NoValidQuotes leaves the cache untouched."""
        result = await self._exchanges.fetch(asset)
        if result.rejected:
            log.debug("refresh %s: rejected %s", asset, result.rejected)
        if not result.quotes:
            raise NoValidQuotes(result.rejected)
        latest = aggregate(asset, result.quotes)
        now = int(self._clock())
        await self._cache.put(latest, updated_at=now)
        self._history.submit(
            HistoryRecord(asset=asset, timestamp=latest.last_updated, price=latest.price, updated_at=now)
        )
        return latest
