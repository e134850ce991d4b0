"""Live price streams: which client follows which assets, and what each still has to be sent.

Announcements (``store/announcements.py``, from any instance) carry the prices that changed; the hub
turns each followed one into its event once (reading it back from Redis only where the
announcement names the asset without its value) and offers it to every subscription of that
asset. A subscription keeps only the newest unsent event
per asset, so a slow client skips ahead instead of queueing: its memory is bounded by the number
of assets it follows, whatever the update rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from aggserver.domain.price import CachedPrice
from aggserver.domain.quality import QualityGuard
from aggserver.domain.reasons import ReasonCode
from aggserver.engine.price_view import PriceView
from aggserver.errors import BackendUnavailable, TooManyStreams
from aggserver.process.tasks import stop_tasks
from aggserver.store.announcements import Announcement
from aggserver.store.prices import PriceCache

__all__ = ["DelistedEvent", "Event", "PriceEvent", "StreamHub", "StreamStats", "Subscription"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceEvent:
    asset: str
    updated_at: int
    # The GET body of the price at the moment it was read (age_seconds and stale included).
    body: bytes
    price: CachedPrice

    def judged(self, guard: QualityGuard | None) -> tuple[str, bytes]:
        """The event's kind and JSON for a subscriber with ``guard``: ``price`` and the body, or
        ``rejected`` and why, when the price fails the guard."""
        rejection = guard.check(self.price) if guard is not None else None
        if rejection is None:
            return "price", self.body
        return "rejected", orjson.dumps({**rejection.answer(self.asset), "updated_at": self.updated_at})


@dataclass(frozen=True, slots=True, kw_only=True)
class DelistedEvent:
    """The last event of an asset a listing reload removed: no venue lists it any more, and
    the stream follows it no longer."""

    asset: str
    updated_at: int

    def judged(self, guard: QualityGuard | None) -> tuple[str, bytes]:
        return "delisted", orjson.dumps({"asset": self.asset, "reason_code": ReasonCode.DELISTED})


Event = PriceEvent | DelistedEvent


class Subscription:
    """One connection's assets and the newest event of each not yet sent to it."""

    def __init__(self, guard: QualityGuard | None = None) -> None:
        self.guard = guard
        self.assets: set[str] = set()
        self._unsent: dict[str, Event] = {}
        self._ready = asyncio.Event()
        self.skipped = 0
        self.ended = False

    def end(self) -> None:
        """Stop the stream (the client left, or the server is shutting down)."""
        self.ended = True
        self._ready.set()

    def offer(self, event: Event) -> None:
        if event.asset in self._unsent:
            self.skipped += 1  # the client had not taken the previous one yet: skip ahead
        self._unsent[event.asset] = event
        self._ready.set()

    def drop(self, assets: Iterable[str]) -> None:
        for asset in assets:
            self._unsent.pop(asset, None)

    async def next_events(self) -> list[Event]:
        """Wait for events, then take every one pending; [] once ended."""
        await self._ready.wait()
        self._ready.clear()
        if self.ended:
            return []
        events = list(self._unsent.values())
        self._unsent.clear()
        return events


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """Live streams open now, events offered, WebSockets closed for flooding, and events the
    open streams skipped ahead of (a subscriber slower than the prices)."""

    connections: int
    delivered: int
    rate_closes: int
    skipped: int


class StreamHub:
    def __init__(
        self,
        cache: PriceCache,
        *,
        view: PriceView,
        max_connections: int,
        max_assets: int,
    ) -> None:
        self._cache = cache
        self._view = view
        self.max_connections = max_connections
        self.max_assets = max_assets
        self._followers: dict[str, set[Subscription]] = {}
        self._subscriptions: set[Subscription] = set()
        self._reads: set[asyncio.Task[None]] = set()
        self.delivered = 0
        # WebSockets closed for sending control messages too fast.
        self.rate_closes = 0

    @property
    def connections(self) -> int:
        return len(self._subscriptions)

    def stats(self) -> StreamStats:
        return StreamStats(
            connections=self.connections,
            delivered=self.delivered,
            rate_closes=self.rate_closes,
            skipped=sum(s.skipped for s in self._subscriptions),
        )

    def open(self, guard: QualityGuard | None = None) -> Subscription:
        if len(self._subscriptions) >= self.max_connections:
            raise TooManyStreams()
        subscription = Subscription(guard)
        self._subscriptions.add(subscription)
        return subscription

    def close(self, subscription: Subscription) -> None:
        self.unsubscribe(subscription, list(subscription.assets))
        self._subscriptions.discard(subscription)

    def subscribe(self, subscription: Subscription, assets: Iterable[str]) -> list[str]:
        """Follow ``assets`` (known symbols); returns those newly followed. ValueError when the
        subscription would follow more than ``max_assets``."""
        added = [a for a in dict.fromkeys(assets) if a not in subscription.assets]
        if len(subscription.assets) + len(added) > self.max_assets:
            raise ValueError(f"at most {self.max_assets} assets per stream")
        for asset in added:
            subscription.assets.add(asset)
            self._followers.setdefault(asset, set()).add(subscription)
        return added

    def unsubscribe(self, subscription: Subscription, assets: Iterable[str]) -> None:
        for asset in assets:
            subscription.assets.discard(asset)
            followers = self._followers.get(asset)
            if followers is not None:
                followers.discard(subscription)
                if not followers:
                    del self._followers[asset]
                    self._view.unfollowed(asset)
        subscription.drop(assets)

    def delisted(self, assets: Iterable[str], now: int) -> None:
        """Assets a listing reload removed: each stream following one is told so, once, and
        follows it no longer."""
        for asset in assets:
            for subscription in list(self._followers.get(asset, ())):
                self.unsubscribe(subscription, [asset])
                subscription.offer(DelistedEvent(asset=asset, updated_at=now))

    async def current(self, assets: Sequence[str]) -> list[PriceEvent]:
        """Events for the prices the assets have now (a new subscriber's first view). Read in
        the loop iteration's one MGET, so many subscriptions in one tick cost one round trip."""
        if not assets:
            return []
        values = await self._cache.get_list(assets)
        view = self._view
        return [
            self._event(view.decoded(a, raw))
            for a, raw in zip(assets, values, strict=True)
            if raw is not None
        ]

    # As an UpdateListener of the process's UpdateFeed:

    def updated(self, announcements: list[Announcement]) -> None:
        unread: list[str] = []
        for asset, raw in announcements:
            if asset in self._followers:
                if raw is None:
                    unread.append(asset)
                else:
                    self._offer(asset, raw)
        if unread:
            task = asyncio.get_running_loop().create_task(self._read_and_offer(unread))
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)

    def gap(self, *, connected: bool) -> None:
        if connected and self._followers:
            # Updates may have been missed while the subscription was down: offer what Redis has.
            self.updated([(asset, None) for asset in self._followers])

    async def _read_and_offer(self, assets: list[str]) -> None:
        try:
            values = await self._cache.get_many(assets)
        except BackendUnavailable as exc:
            log.debug("stream update not read: %s", exc)
            return
        for asset, raw in zip(assets, values, strict=True):
            if raw is not None:
                self._offer(asset, raw)

    def _offer(self, asset: str, raw: bytes) -> None:
        followers = self._followers.get(asset)
        if not followers:
            return
        price = self._view.unoffered(asset, raw)
        if price is None:
            return
        event = self._event(price)
        for subscription in followers:
            subscription.offer(event)
            self.delivered += 1

    def _event(self, price: CachedPrice) -> PriceEvent:
        body = self._view.render(price, int(time.time()))
        return PriceEvent(asset=price.asset, updated_at=price.updated_at, body=body, price=price)

    async def close_all(self) -> None:
        """End every stream (each handler then closes its connection) and pending reads."""
        for subscription in self._subscriptions:
            subscription.end()
        await stop_tasks(list(self._reads))
