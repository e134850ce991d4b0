"""The simulated exchanges: plausible moving prices, bulk tickers, controls."""

from __future__ import annotations

import asyncio

import pytest

from mockex.faults import Faults, FaultsError
from mockex.market import WELL_KNOWN_PRICES, Market, reference_price
from mockex.symbols import SymbolList, split_symbol
from tests.support import poll
from tests.unit.mockex.apps import SYMBOLS, exchange


async def test_ticker_shape_and_unknown_symbol() -> None:
    client = await exchange()
    try:
        body = await (await client.get("/mock/ticker/BTCUSDT")).json()
        assert set(body) == {"symbol", "price", "volume", "timestamp"}
        assert body["symbol"] == "btcusdt"
        assert body["timestamp"] == 1_700_000_000
        assert body["price"] > 0
        assert body["volume"] > 0
        response = await client.get("/mock/ticker/nosuchcoin")
        assert response.status == 404
        assert "msg" in await response.json()
    finally:
        await client.close()


async def test_exchanges_share_a_market_with_small_deviations() -> None:
    a, b = await exchange("exchange1"), await exchange("exchange2")
    try:
        pa = (await (await a.get("/mock/ticker/ethusdt")).json())["price"]
        pb = (await (await b.get("/mock/ticker/ethusdt")).json())["price"]
        assert pa != pb
        assert abs(pa - pb) / pa < 0.002
    finally:
        await a.close()
        await b.close()


def test_prices_move_over_time_and_differ_between_symbols() -> None:
    market = Market(seed=3)
    path = [market.price("btcusdt", 1_700_000_000 + s) for s in range(0, 600, 10)]
    assert len(set(path)) == len(path)
    assert all(0.8 < p / WELL_KNOWN_PRICES["btcusdt"] < 1.25 for p in path)
    assert market.price("btcusdt", 1e9) == Market(seed=3).price("btcusdt", 1e9)
    assert market.price("btcusdt", 1e9) != Market(seed=4).price("btcusdt", 1e9)


def test_synthetic_reference_prices_span_sub_cent_to_thousands() -> None:
    levels = [reference_price(s) for s in SYMBOLS.ordered[100:]]
    assert min(levels) < 0.01
    assert max(levels) > 1_000
    assert len(set(levels)) > 9_000


async def test_bulk_tickers_and_stats() -> None:
    client = await exchange()
    try:
        body = await (await client.get("/mock/tickers?symbols=btcusdt,ETHUSDT,nosuch")).json()
        assert [q["symbol"] for q in body] == ["btcusdt", "ethusdt"]
        await client.get("/mock/ticker/btcusdt")
        stats = await (await client.get("/mock/admin/stats")).json()
        assert stats == {
            "requests": 3,
            "by_symbol": {"btcusdt": 2, "ethusdt": 1},
            "http_requests": 0,
            "rate_limited_answers": 0,
            "in_flight": 0,
            "most_in_flight": 1,  # one request after another
        }
        assert (await client.get("/mock/tickers")).status == 400
        await client.delete("/mock/admin/stats")
        assert (await (await client.get("/mock/admin/stats")).json())["requests"] == 0
    finally:
        await client.close()


async def test_fault_controls_round_trip() -> None:
    client = await exchange()
    try:
        response = await client.post("/mock/admin/faults", json={"mode": "outlier", "price_factor": 10})
        assert (await response.json())["mode"] == "outlier"
        assert (await (await client.get("/mock/admin/faults")).json())["price_factor"] == 10
        await client.post("/mock/admin/quotes", json={"btcusdt": {"price": 2.0, "volume": 1}})
        assert (await (await client.get("/mock/ticker/btcusdt")).json())["price"] == 20.0
        await client.post("/mock/admin/faults", json={"mode": "down"})
        assert (await client.get("/mock/ticker/btcusdt")).status == 503
        await client.post("/mock/admin/faults", json={"mode": "ok", "error_rate": 1.0})
        assert (await client.get("/mock/ticker/btcusdt")).status == 500
        assert (await client.post("/mock/admin/faults", json={"mode": "sideways"})).status == 400
        await client.post("/mock/admin/faults", json={"mode": "ok"})
        assert (await (await client.get("/mock/ticker/btcusdt")).json())["price"] == 2.0
    finally:
        await client.close()


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"mode": "slow", "latency_ms": -1},
        {"error_rate": 2},
        {"price_factor": "x"},
        {"garbage_kind": "x"},
        {"retry_after": -1},
        {"retry_after": "soon"},
        {"x": 1},
    ],
)
def test_fault_settings_are_validated(body: object) -> None:
    with pytest.raises(FaultsError):
        Faults.from_json(body)


LISTED = SymbolList(("btcusdt", "ethusdt", "dogeusdt"))


async def test_binance_personality_lists_a_subset_and_bans_after_ignored_429s() -> None:
    client = await exchange(venue="binance", listed=LISTED)
    try:
        info = await (await client.get("/api/v3/exchangeInfo")).json()
        trading = {s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"}
        assert trading == {"BTCUSDT", "ETHUSDT", "DOGEUSDT"}
        assert [s["status"] for s in info["symbols"] if s["symbol"] not in trading] == ["BREAK"]
        response = await client.get("/api/v3/ticker/24hr", params={"symbol": "BTCUSDT"})
        ticker = await response.json()
        assert isinstance(ticker["lastPrice"], str)
        assert ticker["closeTime"] == 1_700_000_000_000
        assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) == 20 + 2
        assert len(await (await client.get("/api/v3/ticker/24hr")).json()) == 3
        unknown = await client.get("/api/v3/ticker/24hr", params={"symbol": "SOLUSDT"})
        assert (unknown.status, (await unknown.json())["code"]) == (400, -1121)
        await client.post("/mock/admin/faults", json={"mode": "rate_limited", "retry_after": 30})
        statuses = [(await client.get("/api/v3/ticker/24hr")).status for _ in range(4)]
        assert statuses == [429, 429, 429, 418]
        banned = await client.get("/api/v3/ticker/24hr")
        assert banned.headers["Retry-After"] == "120"
        stats = await (await client.get("/mock/admin/stats")).json()
        assert stats["rate_limited_answers"] == 5
    finally:
        await client.close()


PRICE_OF = {
    "okx": lambda body: body["data"][0]["last"],
    "bybit": lambda body: body["result"]["list"][0]["lastPrice"],
    "kraken": lambda body: body["result"]["XBTUSDT"]["c"][0],
    "coinbase": lambda body: body["price"],
}


@pytest.mark.parametrize(
    ("venue", "listing_path", "ticker_path", "params", "limited_status"),
    [
        (
            "okx",
            "/api/v5/public/instruments?instType=SPOT",
            "/api/v5/market/ticker",
            {"instId": "BTC-USDT"},
            429,
        ),
        (
            "bybit",
            "/v5/market/instruments-info?category=spot",
            "/v5/market/tickers",
            {"category": "spot", "symbol": "BTCUSDT"},
            403,
        ),
        ("kraken", "/0/public/AssetPairs", "/0/public/Ticker", {"pair": "XBTUSDT"}, 200),
        ("coinbase", "/products", "/products/BTC-USDT/ticker", {}, 429),
    ],
)
async def test_venue_personalities_answer_in_their_format(
    venue: str, listing_path: str, ticker_path: str, params: dict[str, str], limited_status: int
) -> None:
    client = await exchange(venue=venue, listed=LISTED)
    try:
        assert (await client.get(listing_path)).status == 200
        response = await client.get(ticker_path, params=params)
        assert response.status == 200
        price = PRICE_OF[venue](await response.json())
        assert isinstance(price, str)  # every venue sends numbers as decimal strings
        assert 40_000 < float(price) < 200_000
        await client.post("/mock/admin/quotes", json={"btcusdt": {"price": 5.0}})
        assert float(PRICE_OF[venue](await (await client.get(ticker_path, params=params)).json())) == 5.0
        await client.post("/mock/admin/faults", json={"mode": "rate_limited"})
        limited = await client.get(ticker_path, params=params)
        assert limited.status == limited_status
        assert "Retry-After" not in limited.headers  # only when the fault's retry_after asks
    finally:
        await client.close()


def test_kraken_names_dogecoin_its_own_way() -> None:
    from mockex.venues.kraken import Kraken

    assert split_symbol("dogeusdt") == ("DOGE", "USDT")
    assert Kraken.native(Kraken.__new__(Kraken), "dogeusdt") == "XDGUSDT"
    assert Kraken.native(Kraken.__new__(Kraken), "btcusd") == "XXBTZUSD"


async def test_held_requests_wait_for_another_mode_and_count_as_in_flight() -> None:
    client = await exchange()
    try:
        await client.post("/mock/admin/faults", json={"mode": "held"})
        waiting = [asyncio.ensure_future(client.get(f"/mock/ticker/{s}")) for s in ("btcusdt", "ethusdt")]

        async def both_held() -> bool:
            return bool((await (await client.get("/mock/admin/stats")).json())["in_flight"] == 2)

        await poll(both_held, timeout=10)
        assert not any(task.done() for task in waiting)
        await client.post("/mock/admin/faults", json={"mode": "ok"})
        answers = await asyncio.gather(*waiting)
        assert [r.status for r in answers] == [200, 200]
        stats = await (await client.get("/mock/admin/stats")).json()
        assert (stats["in_flight"], stats["most_in_flight"]) == (0, 2)
    finally:
        await client.close()
