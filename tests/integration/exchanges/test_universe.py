"""The venues' universe and USD prices, against venue-format mocks over real HTTP: pairs that
symbols.csv does not have are priced, listing reloads add and delist pairs, and ``btc-usd`` is the
hand-computed VWAP of BTC's markets converted through measured rates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from aggserver.settings import Settings
from aggserver.web.app import create_app
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

# BTC/USD on one venue, BTC/USDT on two, USDT/USD on one; ETH against USD, USDT and BTC.
LISTED = {
    "kraken": ["btcusd", "ethusd"],
    "okx": ["btcusdt", "usdtusd", "ethbtc"],
    "binance": ["btcusdt", "ethusdt", "ethbtc", "solusdt"],
}
KRAKEN, OKX, BINANCE = range(3)


@pytest.fixture(scope="module")
def venue_services() -> Iterator[list[Service]]:
    with stopped_after(start_venue_mocks(LISTED)) as services:
        yield services


async def list_as_started(admin: Exchanges) -> None:
    for index, listed in enumerate(LISTED.values()):
        await admin.list_exactly(index, listed)


@pytest.fixture
async def venues(venue_services: list[Service]) -> AsyncIterator[Exchanges]:
    async with exchange_admin(venue_services) as admin:
        await list_as_started(admin)
        yield admin
        await list_as_started(admin)


def universe_settings(settings: Settings, services: list[Service], **extra: str) -> Settings:
    return support.venue_settings(
        settings, dict(zip(LISTED, services, strict=True)), UNIVERSE="venues", INGEST="poll", **extra
    )


@pytest.fixture
async def client(
    aiohttp_client: Any,
    settings: Settings,
    venue_services: list[Service],
    venues: Exchanges,
    redis_client: redis.Redis,
) -> Client:
    test_client: Client = await aiohttp_client(create_app(universe_settings(settings, venue_services)))
    return test_client


async def pin_markets(venues: Exchanges, *, usdt: float = 0.999, at: int | None = None) -> None:
    """Every venue's quotes by hand (volume in the base asset); USDT at ``usdt`` dollars."""
    at = at or int(time.time())
    btc_in_usdt = 91_000.0 / usdt
    await venues.pin(KRAKEN, {"btcusd": quote(91_000.0, 10, at), "ethusd": quote(3_050.0, 50, at)})
    await venues.pin(
        OKX,
        {
            "btcusdt": quote(btc_in_usdt * 1.001, 20, at),
            "usdtusd": quote(usdt, 1_000_000, at),
            "ethbtc": quote(0.0335, 200, at),
        },
    )
    await venues.pin(
        BINANCE,
        {
            "btcusdt": quote(btc_in_usdt, 30, at),
            "ethusdt": quote(3_052.0, 100, at),
            "ethbtc": quote(0.03352, 100, at),
        },
    )


def quote(price: float, volume: float, at: int) -> dict[str, float]:
    return {"price": price, "volume": float(volume), "timestamp": at}


def btc_usd_by_hand(usdt: float) -> float:
    btc_in_usdt = 91_000.0 / usdt
    return (91_000.0 * 10 + btc_in_usdt * 1.001 * usdt * 20 + btc_in_usdt * usdt * 30) / 60


async def refreshed(client: Client, asset: str) -> dict[str, Any]:
    """``asset``'s price after a POST /refresh of it."""
    response = await client.post(f"/refresh/{asset}")
    assert response.status == 200, await checked(response)
    body: dict[str, Any] = await checked(await client.get(f"/prices/{asset}"))
    return body


async def markets(client: Client, asset: str) -> dict[str, dict[str, Any]]:
    body = await checked(await client.get(f"/prices/{asset}?detail=sources"))
    return {f"{q['exchange']}:{q.get('pair', asset)}": q for q in body["quotes"]}


def test_auto_takes_the_venues_with_venue_adapters_and_the_file_with_mockex() -> None:
    assert Settings.from_env({"EXCHANGES": "binance,kraken"}).universe_source == "venues"
    assert Settings.from_env({}).universe_source == "file"
    assert Settings.from_env({"EXCHANGES": "binance,mockex=http://127.0.0.1:1/t"}).universe_source == "file"
    assert Settings.from_env({"EXCHANGES": "binance", "UNIVERSE": "file"}).universe_source == "file"


async def test_the_venues_universe_prices_pairs_the_symbols_file_lacks(
    client: Client, venues: Exchanges
) -> None:
    await pin_markets(venues)
    status = await checked(await client.get("/status"))
    universe = status["universe"]
    assert universe["source"] == "venues"
    assert universe["pairs"] == 7  # btcusd ethusd btcusdt usdtusd ethbtc ethusdt solusdt
    assert universe["venues"]["binance"] == {"listed": 4, "share": round(4 / 7, 4)}
    assert universe["usd_prices"] == 4  # usdt-usd, btc-usd, eth-usd, sol-usd
    body = await refreshed(client, "btcusd")
    assert body["price"] == 91_000.0
    # symbols.csv's synthetic symbols are not the universe now.
    assert (await client.get("/prices/bnbusdt")).status == 400


async def test_btc_usd_is_the_hand_computed_vwap_of_the_converted_markets(
    client: Client, venues: Exchanges
) -> None:
    await pin_markets(venues)
    body = await refreshed(client, "btc-usd")
    assert body["asset"] == "btc-usd"
    assert body["price"] == pytest.approx(btc_usd_by_hand(0.999), rel=1e-9)
    assert body["sources"] == 3
    legs = await markets(client, "btc-usd")
    assert set(legs) == {"kraken:btcusd", "okx:btcusdt", "binance:btcusdt"}
    usdt_leg = legs["binance:btcusdt"]
    assert usdt_leg["accepted"]
    assert (usdt_leg["quote_currency"], usdt_leg["rate"]) == ("usdt", 0.999)
    assert usdt_leg["price"] == pytest.approx(usdt_leg["raw_price"] * 0.999)
    assert (legs["kraken:btcusd"]["rate"], legs["kraken:btcusd"]["rate_age"]) == (1.0, None)
    rate = await checked(await client.get("/prices/usdt-usd"))
    assert rate["price"] == 0.999


async def test_a_usdt_depeg_moves_btc_usd_by_the_expected_amount(client: Client, venues: Exchanges) -> None:
    await pin_markets(venues, usdt=1.0)
    before = (await refreshed(client, "btc-usd"))["price"]
    assert before == pytest.approx(btc_usd_by_hand(1.0), rel=1e-9)
    # USDT falls to 0.97: every USDT-quoted venue asks more USDT for a bitcoin, and the USD
    # price, converted at the measured rate, stays where the dollar markets are.
    await pin_markets(venues, usdt=0.97)
    after = (await refreshed(client, "btc-usd"))["price"]
    assert after == pytest.approx(btc_usd_by_hand(0.97), rel=1e-9)
    # Taken as 1.0, the depeg would have priced BTC 3 % high on 5/6 of the volume.
    naive = (91_000.0 * 10 + 91_000 / 0.97 * 1.001 * 20 + 91_000 / 0.97 * 30) / 60
    assert abs(after - naive) / naive > 0.025


async def test_a_depeg_at_the_venues_moves_usdt_pairs_and_not_btc_usd(
    client: Client, venues: Exchanges
) -> None:
    # Nothing pinned: the mocks' own consistent market, where USDT is worth what they say.
    before_pair = (await refreshed(client, "btcusdt"))["price"]
    before = (await refreshed(client, "btc-usd"))["price"]
    for index in range(len(LISTED)):
        await venues.depeg(index, usdt=0.97)
    after_pair = (await refreshed(client, "btcusdt"))["price"]
    after = (await refreshed(client, "btc-usd"))["price"]
    assert (await checked(await client.get("/prices/usdt-usd")))["price"] == pytest.approx(0.97, rel=2e-3)
    assert after_pair / before_pair == pytest.approx(1 / 0.97, rel=3e-3)
    assert after / before == pytest.approx(1.0, abs=3e-3)


async def test_eth_btc_contributes_to_eth_usd_through_btc_usd(client: Client, venues: Exchanges) -> None:
    await pin_markets(venues)
    body = await refreshed(client, "eth-usd")
    btc = btc_usd_by_hand(0.999)
    by_hand = (3_050.0 * 50 + 3_052.0 * 0.999 * 100 + 0.0335 * btc * 200 + 0.03352 * btc * 100) / 450
    assert body["price"] == pytest.approx(by_hand, rel=1e-9)
    legs = await markets(client, "eth-usd")
    assert legs["okx:ethbtc"]["quote_currency"] == "btc"
    assert legs["okx:ethbtc"]["rate"] == pytest.approx(btc, rel=1e-9)


async def test_a_stale_usdt_rate_excludes_the_usdt_markets(
    aiohttp_client: Any, settings: Settings, venue_services: list[Service], venues: Exchanges
) -> None:
    app = create_app(universe_settings(settings, venue_services, QUOTE_MAX_AGE_SECONDS="4"))
    client: Client = await aiohttp_client(app)
    now = int(time.time())
    await pin_markets(venues, at=now - 1)
    await refreshed(client, "usdt-usd")  # measured at now - 1
    # From now on OKX's USDT/USD quote is too old to be a rate; the BTC markets stay fresh.
    await venues.pin(OKX, {"usdtusd": quote(0.999, 1_000_000, now - 60)})
    fresh = {"btcusdt": quote(91_100.0, 30, now + 8)}
    await venues.pin(BINANCE, fresh)
    await venues.pin(OKX, {"btcusdt": quote(91_100.0, 20, now + 8)})
    await venues.pin(KRAKEN, {"btcusd": quote(91_000.0, 10, now + 8)})

    async def usdt_markets_left_out() -> dict[str, dict[str, Any]] | None:
        response = await client.post("/refresh/btc-usd")
        await checked(response)
        legs = await markets(client, "btc-usd")
        codes = {legs[m].get("reason_code") for m in ("okx:btcusdt", "binance:btcusdt")}
        return legs if codes == {"stale_rate"} else None

    legs = await poll(usdt_markets_left_out, timeout=15, interval=0.5)
    assert legs["kraken:btcusd"]["accepted"]
    assert legs["binance:btcusdt"]["rate_age"] > 4


async def test_usd_prices_answer_everywhere_a_pair_does(client: Client, venues: Exchanges) -> None:
    await pin_markets(venues)
    await refreshed(client, "btc-usd")
    batch = await checked(await client.get("/prices?assets=btc-usd,BTCUSD,eth-usd"))
    assert [p["asset"] for p in batch["prices"]] == ["btc-usd"]
    assert batch["missing"] == ["btcusd", "eth-usd"]  # refreshing btc-usd stores no pair price
    guarded = await client.get("/prices/btc-usd?min_sources=4")
    assert guarded.status == 503
    assert (await checked(guarded))["reason_code"] == "too_few_sources"

    async def recorded() -> dict[str, Any] | None:
        body: dict[str, Any] = await checked(await client.get("/prices/btc-usd/history"))
        return body if body["records"] else None

    history = await poll(recorded, timeout=15)
    assert history["records"][0]["price"] == pytest.approx(btc_usd_by_hand(0.999), rel=1e-9)
    candles = await checked(await client.get("/prices/btc-usd/candles?interval=1m"))
    assert candles["candles"]
    at = await checked(await client.get(f"/prices/btc-usd/at?timestamp={int(time.time())}"))
    assert at["asset"] == "btc-usd"
    async with client.get("/stream?assets=btc-usd") as stream:
        async for event in sse_events(stream):
            if event.get("event") == "price":
                assert valid_price(event["data"])["asset"] == "btc-usd"
                break


async def test_listing_reloads_price_new_pairs_and_delist_removed_ones(
    aiohttp_client: Any, settings: Settings, venue_services: list[Service], venues: Exchanges
) -> None:
    app = create_app(
        universe_settings(settings, venue_services, LISTING_REFRESH_SECONDS="0.5", AUTO_REFRESH="true")
    )
    client: Client = await aiohttp_client(app)
    await pin_markets(venues)

    async def priced(asset: str) -> bool:
        return (await client.get(f"/prices/{asset}")).status == 200

    async def recorded(asset: str) -> bool:
        return bool((await checked(await client.get(f"/prices/{asset}/history")))["records"])

    await poll(lambda: recorded("btcusd"), timeout=20)
    async with client.get("/stream?assets=btcusd") as stream:
        events = sse_events(stream)
        # Kraken lists SOL/USD from now on, and no longer BTC/USD.
        await venues.list_exactly(KRAKEN, ["ethusd", "solusd"])
        async with asyncio.timeout(20):
            async for event in events:
                if event.get("event") == "delisted":
                    assert json.loads(event["data"]) == {"asset": "btcusd", "reason_code": "delisted"}
                    break
    await poll(lambda: priced("solusd"), timeout=20)
    gone = await client.get("/prices/btcusd")
    assert gone.status == 404
    assert (await checked(gone))["reason_code"] == "delisted"
    assert (await checked(await client.post("/refresh/btcusd")))["reason_code"] == "delisted"
    batch = await checked(await client.get("/prices?assets=btcusd,ethusd"))
    assert batch["reasons"].get("btcusd") == "delisted"
    history = await checked(await client.get("/prices/btcusd/history"))
    assert history["records"], "a delisted pair's history stays readable"
    status = (await checked(await client.get("/status")))["universe"]
    assert status["delisted"] == 1
    # sol-usd comes with its market: SOL/USD converts at 1.
    await poll(lambda: priced("sol-usd"), timeout=20)
