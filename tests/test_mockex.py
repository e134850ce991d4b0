"""The simulated exchanges: plausible moving prices, bulk tickers, controls."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mockex.app import create_app
from mockex.faults import Faults, FaultsError
from mockex.market import WELL_KNOWN_PRICES, Market, reference_price
from mockex.symbols import DEFAULT_SYMBOLS_FILE, load_symbols

SYMBOLS = load_symbols(DEFAULT_SYMBOLS_FILE)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def exchange(
    name: str = "exchange1", seed: int = 1, clock: Clock | None = None
) -> TestClient[Any, Any]:
    app = create_app(name=name, symbols=SYMBOLS, seed=seed, clock=clock or Clock(1_700_000_000))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


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
        assert stats == {"requests": 3, "by_symbol": {"btcusdt": 2, "ethusdt": 1}}
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
        {"x": 1},
    ],
)
def test_fault_settings_are_validated(body: object) -> None:
    with pytest.raises(FaultsError):
        Faults.from_json(body)
