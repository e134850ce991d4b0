"""aggserver against venue-format mock exchanges over real HTTP: each venue's listing, bulk and
single tickers, error envelopes and rate-limit answers; VWAP across venues; a venue that asked
us to wait gets no request while the others keep the price fresh."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from aggserver.exchanges.client import ExchangeClient
from aggserver.exchanges.transport import create_session
from aggserver.settings import Settings
from aggserver.venues import parse_exchanges
from aggserver.venues.base import Bulk
from aggserver.web.app import create_app
from aggserver.web.keys import SCHEDULER
from devstack.services import Service
from tests import support
from tests.support import (
    Exchanges,
    checked,
    exchange_admin,
    poll,
    sse_events,
    start_venue_mocks,
    stopped_after,
    valid_price,
)

Client = TestClient[Any, Application]

# Which of our symbols each venue lists: btcusdt everywhere, the others on two or three venues,
# dogeusdt under Kraken's own name (XDGUSDT), adausdt only on the per-product venue.
LISTED = {
    "binance": ["btcusdt", "ethusdt", "solusdt", "dogeusdt"],
    "okx": ["btcusdt", "ethusdt", "xrpusdt"],
    "bybit": ["btcusdt", "solusdt", "xrpusdt"],
    "kraken": ["btcusdt", "ethusdt", "dogeusdt"],
    "coinbase": ["btcusdt", "adausdt"],
}
VENUES = list(LISTED)
NOBODY_LISTS = "bnbusdt"


@pytest.fixture(scope="module")
def venue_services() -> Iterator[list[Service]]:
    with stopped_after(start_venue_mocks(LISTED)) as services:
        yield services


@pytest.fixture
async def venues(venue_services: list[Service]) -> AsyncIterator[Exchanges]:
    async with exchange_admin(venue_services) as admin:
        yield admin


def venue_settings(settings: Settings, services: list[Service], **extra: str) -> Settings:
    return support.venue_settings(settings, dict(zip(VENUES, services, strict=True)), **extra)


@pytest.fixture
async def client(
    aiohttp_client: Any,
    settings: Settings,
    venue_services: list[Service],
    venues: Exchanges,
    redis_client: redis.Redis,
) -> Client:
    app = create_app(venue_settings(settings, venue_services))
    test_client: Client = await aiohttp_client(app)
    return test_client


async def sources(client: Client, asset: str) -> dict[str, dict[str, Any]]:
    body = await checked(await client.get(f"/prices/{asset}?detail=sources"))
    return {quote["exchange"]: quote for quote in body["quotes"]}


async def test_listings_are_loaded_per_venue(client: Client) -> None:
    status = await checked(await client.get("/status"))
    by_name = {e["name"]: e for e in status["exchanges"]}
    for venue, listed in LISTED.items():
        assert by_name[venue]["venue"] == venue
        assert by_name[venue]["listed"] == len(listed)  # the venue's delisted entry is not counted
        assert by_name[venue]["listing_loaded_at"] is not None
    metrics = await (await client.get("/metrics")).text()
    assert 'aggserver_exchange_listed_symbols{exchange="coinbase"} 2.0' in metrics


async def test_vwap_across_three_venues_is_the_hand_computed_one(client: Client, venues: Exchanges) -> None:
    # btcusdt is on all five; pin three and take the other two out, so the sum is plain.
    for index, (price, volume) in enumerate([(100.0, 1.0), (102.0, 3.0), (101.0, 2.0)]):
        await venues.pin(index, {"btcusdt": {"price": price, "volume": volume}})
    await venues.set_faults(3, mode="down")
    await venues.set_faults(4, mode="down")
    assert (await client.post("/refresh/btcusdt")).status == 200
    body = await checked(await client.get("/prices/btcusdt"))
    assert body["sources"] == 3
    assert body["price"] == pytest.approx((100 * 1 + 102 * 3 + 101 * 2) / 6)
    quotes = await sources(client, "btcusdt")
    assert {name for name, q in quotes.items() if q["accepted"]} == {"binance", "okx", "bybit"}


async def test_a_symbol_is_asked_only_of_the_venues_listing_it(client: Client, venues: Exchanges) -> None:
    assert (await client.post("/refresh/ethusdt")).status == 200
    body = await checked(await client.get("/prices/ethusdt"))
    assert body["sources"] == 3
    assert set(await sources(client, "ethusdt")) == {"binance", "okx", "kraken"}
    assert (await client.post("/refresh/adausdt")).status == 200
    assert (await checked(await client.get("/prices/adausdt")))["sources"] == 1
    # Kraken calls dogecoin XDG: our dogeusdt is its XDGUSDT.
    assert (await client.post("/refresh/dogeusdt")).status == 200
    assert set(await sources(client, "dogeusdt")) == {"binance", "kraken"}
    assert (await checked(await client.get("/prices/dogeusdt")))["sources"] == 2


async def test_outliers_breakers_and_streams_work_with_venue_sources(
    client: Client, venues: Exchanges
) -> None:
    okx, coinbase = VENUES.index("okx"), VENUES.index("coinbase")
    await venues.set_faults(okx, mode="outlier", price_factor=2.0)
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert (await sources(client, "btcusdt"))["okx"]["reason"].startswith("outlier")
    assert (await sources(client, "btcusdt"))["okx"]["reason_code"] == "outlier"

    await venues.set_faults(coinbase, mode="down")
    for _ in range(5):  # BREAKER_FAILURES
        await client.post("/refresh/btcusdt")
    status = await checked(await client.get("/status"))
    assert next(e for e in status["exchanges"] if e["name"] == "coinbase")["circuit"] == "open"
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert (await sources(client, "btcusdt"))["coinbase"]["reason"] == "circuit open"
    assert (await sources(client, "btcusdt"))["coinbase"]["reason_code"] == "breaker_open"

    await venues.set_faults(okx, mode="ok")
    response = await client.get("/stream?assets=xrpusdt")
    events = sse_events(response)
    for index, price in ((VENUES.index("okx"), 3.0), (VENUES.index("bybit"), 3.0)):
        await venues.pin(index, {"xrpusdt": {"price": price}})
    assert (await client.post("/refresh/xrpusdt")).status == 200
    async for event in events:
        if event.get("event") == "price":
            update = valid_price(event["data"])
            if update["price"] == 3.0:
                assert update["sources"] == 2
                break
    response.close()


async def test_kraken_quotes_say_their_time_is_the_receive_time(client: Client) -> None:
    assert (await client.post("/refresh/ethusdt")).status == 200
    quotes = await sources(client, "ethusdt")
    assert quotes["kraken"]["timestamp_from"] == "received"
    assert "timestamp_from" not in quotes["binance"]


async def test_a_symbol_no_venue_lists_is_404(client: Client) -> None:
    response = await client.post(f"/refresh/{NOBODY_LISTS}")
    assert response.status == 404
    assert (await checked(response))["msg"] == "No configured exchange lists this asset"
    assert (await client.get(f"/prices/{NOBODY_LISTS}")).status == 404


ENVELOPE_REASONS = {
    "binance": "HTTP 500: code -1001",
    "okx": "code 50001",
    "bybit": "retCode 10016",
    "kraken": "EService:Unavailable",
    "coinbase": "HTTP 503: Service Unavailable",
}


@pytest.mark.parametrize("venue", VENUES)
async def test_each_venues_error_answer_is_a_rejected_quote(
    client: Client, venues: Exchanges, venue: str
) -> None:
    index = VENUES.index(venue)
    await venues.set_faults(index, mode="venue_error")
    assert (await client.post("/refresh/btcusdt")).status == 200
    quotes = await sources(client, "btcusdt")
    assert not quotes[venue]["accepted"]
    assert ENVELOPE_REASONS[venue] in quotes[venue]["reason"]
    # Binance and Coinbase answer an error status; the others an error inside a 200 envelope.
    expected = "http_error" if venue in ("binance", "coinbase") else "venue_error"
    assert quotes[venue]["reason_code"] == expected
    assert sum(q["accepted"] for q in quotes.values()) == 4


RATE_LIMIT_REASONS = {
    "binance": "rate limited (HTTP 429)",
    "okx": "rate limited (HTTP 429)",
    "bybit": "rate limited (HTTP 403",
    "kraken": "rate limited (EAPI:Rate limit exceeded)",
    "coinbase": "rate limited (HTTP 429)",
}


@pytest.mark.parametrize("venue", VENUES)
async def test_a_rate_limited_venue_gets_no_request_until_retry_after(
    client: Client, venues: Exchanges, venue: str
) -> None:
    index = VENUES.index(venue)
    await venues.set_faults(index, mode="rate_limited", retry_after=30)
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert RATE_LIMIT_REASONS[venue] in (await sources(client, "btcusdt"))[venue]["reason"]
    await venues.set_faults(index, mode="ok")
    await venues.reset_stats(index)
    for _ in range(3):
        assert (await client.post("/refresh/btcusdt")).status == 200
        body = await checked(await client.get("/prices/btcusdt"))
        assert body["sources"] == 4  # the others keep the price fresh
    assert await venues.http_requests(index) == 0
    held = (await sources(client, "btcusdt"))[venue]["reason"]
    assert held.startswith("rate limited: no requests for another")
    status = await checked(await client.get("/status"))
    entry = next(e for e in status["exchanges"] if e["name"] == venue)
    assert entry["rate_limited"] == 1
    assert entry["held"] >= 3
    assert 20 < entry["blocked_seconds"] <= 30


async def test_binance_ban_after_ignored_429s_is_honoured(client: Client, venues: Exchanges) -> None:
    await venues.set_faults(0, mode="rate_limited")
    async with ClientSession() as raw:
        # Someone else on our IP ignores the 429s until Binance bans the IP.
        for _ in range(4):
            async with raw.get(f"{venues.urls[0]}/api/v3/ticker/24hr?symbol=BTCUSDT") as response:
                last = response.status
    assert last == 418
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert "HTTP 418" in (await sources(client, "btcusdt"))["binance"]["reason"]
    status = await checked(await client.get("/status"))
    binance = next(e for e in status["exchanges"] if e["name"] == "binance")
    assert binance["blocked_seconds"] > 100  # the ban's Retry-After: 120


async def test_scheduled_rounds_price_every_listed_symbol_from_bulk_answers(
    aiohttp_client: Any,
    settings: Settings,
    venue_services: list[Service],
    venues: Exchanges,
    redis_client: redis.Redis,
) -> None:
    app = create_app(
        venue_settings(
            settings, venue_services, AUTO_REFRESH="true", BULK_ROUND_SECONDS="1", LEASE_SECONDS="2"
        )
    )
    client: Client = await aiohttp_client(app)
    everything = sorted({s for listed in LISTED.values() for s in listed})

    async def all_priced() -> bool:
        for asset in everything:
            if (await client.get(f"/prices/{asset}")).status != 200:
                return False
        return True

    await poll(all_priced, timeout=30)
    for asset in everything:
        body = await checked(await client.get(f"/prices/{asset}?detail=sources"))
        listing = {venue for venue, listed in LISTED.items() if asset in listed}
        assert {q["exchange"] for q in body["quotes"]} == listing

    async def bulk_round_reported() -> bool:
        status = await checked(await client.get("/status"))
        return "bulk" in status["refresh"]["round_seconds"]

    await poll(bulk_round_reported, timeout=30)
    # An all-tickers venue costs one request a round (shared with the tier slots' refreshes
    # within the snapshot's life), not one per symbol.
    binance = VENUES.index("binance")
    scheduler = app[SCHEDULER]
    await venues.reset_stats(binance)
    start = scheduler.bulk_rounds
    await poll(lambda: scheduler.bulk_rounds >= start + 4, timeout=30)
    rounds = scheduler.bulk_rounds - start
    assert await venues.http_requests(binance) < rounds * len(LISTED["binance"])


async def test_an_exchange_without_a_bulk_endpoint_is_asked_per_symbol(aiohttp_server: Any) -> None:
    asked: Counter[str] = Counter()

    async def ticker(request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        asked[symbol] += 1
        return web.json_response(
            {"symbol": symbol, "price": 1.5, "volume": 2.0, "timestamp": int(time.time())}
        )

    app = web.Application()
    app.router.add_get("/x/ticker/{symbol}", ticker)  # and no /x/tickers: bulk requests get 404
    server = await aiohttp_server(app)
    async with create_session(connections=10, timeout=2) as session:
        exchanges = ExchangeClient(
            session,
            parse_exchanges(f"mockex=http://127.0.0.1:{server.port}/x/ticker"),
            symbols={"btcusdt", "ethusdt"},
            timeout=2,
        )
        results = await exchanges.fetch_many(["btcusdt", "ethusdt"])
        assert [r.quotes[0].price for r in results.values()] == [1.5, 1.5]
        assert exchanges.exchanges[0].bulk is Bulk.NONE
        await exchanges.fetch_many(["btcusdt"])  # per symbol from then on: no second 404
    assert asked == {"btcusdt": 2, "ethusdt": 1}
    assert exchanges.exchanges[0].requests == 4  # one bulk 404, then three single requests
