"""Venue ticker streams: parsing the venues' documented frames (tests/fixtures/streams, shapes from
the sources cited in each venue module), and the stream client against mockex's venue
personalities over real WebSockets: subscribing, keep-alive, a venue closing every connection,
a stalled feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from aggserver.domain.symbols import load_symbols
from aggserver.exchanges.stream_client import StreamClient
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.venues.base import Ticker
from aggserver.venues.streams import STREAMS
from devstack.services import Service, start_mockex
from mockex.symbols import split_symbol
from tests.paths import FIXTURES
from tests.support import poll

FIXTURES = FIXTURES / "streams"
LISTED = 40


def natives_of(venue: str) -> list[str]:
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE).ordered[:LISTED]
    joiner = "-" if venue == "okx" else ""
    return [joiner.join(split_symbol(symbol)) for symbol in symbols]


@pytest.fixture(scope="module")
def venues() -> Iterator[dict[str, Service]]:
    services = {venue: start_mockex(name=venue, venue=venue, listed=LISTED, seed=3) for venue in STREAMS}
    yield services
    for service in services.values():
        service.stop()


class Feed:
    """What a client delivered: every ticker by native name, in order of arrival."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.latest: dict[str, Ticker] = {}

    def __call__(self, venue: str, tickers: list[Ticker], received: float) -> None:
        for ticker in tickers:
            self.arrivals.append((ticker.native, received))
            self.latest[ticker.native] = ticker

    def seen_since(self, moment: float) -> set[str]:
        return {native for native, received in self.arrivals if received >= moment}


@pytest.fixture
async def admin(venues: dict[str, Service]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        for service in venues.values():
            # Fast pushes, no idle cut, not stalled: each test sets what it needs.
            body = {"interval_ms": 100, "idle_close_ms": None, "stall": False, "disconnect": True}
            async with session.post(f"{service.url}/mock/admin/streams", json=body) as response:
                assert response.status == 200
        yield session


async def stream_stats(session: aiohttp.ClientSession, service: Service) -> dict[str, Any]:
    async with session.get(f"{service.url}/mock/admin/streams") as response:
        result: dict[str, Any] = await response.json()
        return result


async def started(
    session: aiohttp.ClientSession, service: Service, venue: str, feed: Feed, **options: Any
) -> tuple[StreamClient, asyncio.Task[None]]:
    url = service.url.replace("http://", "ws://")
    client = StreamClient(session, STREAMS[venue], url, natives_of(venue), feed, **options)
    return client, asyncio.create_task(client.run())


@pytest.mark.parametrize("venue", sorted(STREAMS))
async def test_the_client_subscribes_and_every_listed_instrument_arrives(
    venue: str, venues: dict[str, Service], admin: aiohttp.ClientSession
) -> None:
    feed = Feed()
    client, task = await started(admin, venues[venue], venue, feed)
    try:
        await poll(lambda: set(feed.latest) == set(natives_of(venue)))
        assert all(t.price > 0 and t.volume >= 0 and t.timestamp_ms for t in feed.latest.values())
        stats = await stream_stats(admin, venues[venue])
        assert stats["connections"] == 1
        assert stats["subscriptions"] == LISTED
        assert client.connected
        assert (client.errors, client.rejected) == (0, 0)
    finally:
        await client.stop(task)


@pytest.mark.parametrize("venue", ["okx", "bybit"])
async def test_keep_alive_holds_a_connection_the_venue_would_cut(
    venue: str, venues: dict[str, Service], admin: aiohttp.ClientSession
) -> None:
    service = venues[venue]
    await admin.post(f"{service.url}/mock/admin/streams", json={"idle_close_ms": 400})
    before = await stream_stats(admin, service)
    feed = Feed()
    client, task = await started(admin, service, venue, feed, keepalive_seconds=0.1)
    try:
        start = time.time()
        # Well past the venue's idle limit, pushes still arrive on the first connection.
        await poll(lambda: feed.arrivals and feed.arrivals[-1][1] > start + 1.5, timeout=15)
        stats = await stream_stats(admin, service)
        assert stats["connected_total"] - before["connected_total"] == 1
        assert stats["idle_closes"] == before["idle_closes"]
        assert client.connects == 1
    finally:
        await client.stop(task)
    # Without the keep-alive the venue cuts the connection, and the client comes back.
    feed = Feed()
    client, task = await started(admin, service, venue, feed, keepalive_seconds=0)
    try:
        await poll(lambda: client.connects >= 2, timeout=15)
        assert (await stream_stats(admin, service))["idle_closes"] > before["idle_closes"]
    finally:
        await client.stop(task)


@pytest.mark.parametrize("venue", sorted(STREAMS))
async def test_a_venue_closing_every_connection_leaves_no_instrument_behind(
    venue: str, venues: dict[str, Service], admin: aiohttp.ClientSession
) -> None:
    service = venues[venue]
    feed = Feed()
    client, task = await started(admin, service, venue, feed)
    try:
        await poll(lambda: set(feed.latest) == set(natives_of(venue)))
        closed = await (
            await admin.post(f"{service.url}/mock/admin/streams", json={"disconnect": True})
        ).json()
        assert closed["closed"] == 1
        after = time.time()
        await poll(lambda: client.connects == 2)
        await poll(lambda: feed.seen_since(after) == set(natives_of(venue)))
        assert client.errors == 0
    finally:
        await client.stop(task)


async def test_a_stalled_feed_is_replaced(venues: dict[str, Service], admin: aiohttp.ClientSession) -> None:
    service = venues["binance"]
    feed = Feed()
    client, task = await started(admin, service, "binance", feed, stall_seconds=0.5)
    try:
        await poll(lambda: feed.arrivals)
        await admin.post(f"{service.url}/mock/admin/streams", json={"stall": True})
        await poll(lambda: client.stalls >= 1 and client.connects >= 2, timeout=15)
        await admin.post(f"{service.url}/mock/admin/streams", json={"stall": False})
        after = time.time()
        await poll(lambda: feed.seen_since(after) == set(natives_of("binance")))
    finally:
        await client.stop(task)
