"""What streams send, as pure rules: a slow subscriber skips ahead, and a cached price carries what an
event needs."""

from __future__ import annotations

import asyncio

from aggserver.domain.price import CachedPrice
from aggserver.web.stream_hub import PriceEvent, Subscription


def test_a_slow_subscriber_skips_ahead_instead_of_queueing() -> None:
    subscription = Subscription()
    subscription.assets = {"a", "b", "c"}
    price = CachedPrice.decode(b'{"asset":"a","price":1.0,"last_updated":1}')
    for n in range(1000):
        subscription.offer(PriceEvent(asset="abc"[n % 3], updated_at=n, body=b"{}", price=price))
    events = asyncio.run(subscription.next_events())
    assert sorted((e.asset, e.updated_at) for e in events) == [("a", 999), ("b", 997), ("c", 998)]
    assert subscription.skipped == 997


def test_cached_price_carries_what_events_need() -> None:
    price = CachedPrice.decode(b'{"asset":"btcusdt","price":1.5,"last_updated":3,"updated_at":4}')
    assert (price.asset, price.updated_at) == ("btcusdt", 4)
