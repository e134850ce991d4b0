"""Consistent prices: pairs divide their assets' USD values, venues deviate a little, pegs move."""

from __future__ import annotations

import math
from typing import Any

import pytest
from aiohttp import web

from mockex import pricing
from mockex.app import EXCHANGE, create_app
from mockex.cli import markets, parse_args
from mockex.market import DEVIATION, WELL_KNOWN_PRICES, Market
from mockex.pegs import PegsError, parse_pegs
from mockex.pricing import pair_price, usd_value
from mockex.universe import realistic_markets
from tests.unit.mockex.apps import NOW, SYMBOLS, Clock
from tests.unit.mockex.conftest import OpenExchange

# A product of two quotes against one: each is within DEVIATION of the shared price.
TRIANGLE = 3 * DEVIATION
TIMES = [NOW + offset for offset in (0, 1, 59, 3_600, 86_400 * 30)]


def realistic_app(venue: str, clock: Clock, size: int = 300) -> web.Application:
    known = markets(parse_args(["--venue", venue, "--universe", f"realistic:{size}"]))
    return create_app(
        name=venue,
        symbols=known.symbols,
        seed=1,
        clock=clock,
        venue=venue,
        listed=known.listed,
        own_paths=known.own_paths,
    )


def price(app: web.Application, symbol: str) -> float:
    return float(app[EXCHANGE].quote(symbol)["price"])


def test_usd_values_have_real_magnitudes_and_the_dollar_coins_hold_one() -> None:
    market = Market(seed=0)
    assert 70_000 < usd_value(market, "btc", NOW) < 115_000
    assert 2_300 < usd_value(market, "ETH", NOW) < 3_800
    assert 110 < usd_value(market, "sol", NOW) < 180
    assert [usd_value(market, c, NOW) for c in ("usd", "usdt", "usdc")] == [1.0, 1.0, 1.0]
    euro = [usd_value(market, "eur", NOW + step * 997.3) for step in range(200)]
    assert max(abs(e / 1.08 - 1) for e in euro) < 0.004  # a tenth of a coin's wander
    assert len(set(euro)) == len(euro)


def test_usdt_pairs_keep_their_paths_to_the_bit_and_the_files_other_pairs_their_own() -> None:
    market = Market(seed=0)
    synthetic_usdt = next(s for s in SYMBOLS.ordered[30:] if s.endswith("usdt"))
    for symbol in ("btcusdt", "pepeusdt", synthetic_usdt):
        assert all(pair_price(market, symbol, t) == market.price(symbol, t) for t in TIMES)
    own = pricing.own_paths(SYMBOLS.ordered)
    assert not own & {"btcusdt", synthetic_usdt, "ethbtc"}
    assert {s for s in SYMBOLS.ordered if not s.endswith("usdt")} - {"ethbtc"} == own
    assert WELL_KNOWN_PRICES["ethbtc"] == pytest.approx(pair_price(market, "ethbtc", NOW), rel=0.05)


async def test_the_files_own_path_pairs_are_quoted_as_before(open_exchange: OpenExchange) -> None:
    client = await open_exchange(seed=1)
    own = sorted(pricing.own_paths(SYMBOLS.ordered))[:3]
    for symbol in own:
        quote = await (await client.get(f"/mock/ticker/{symbol}")).json()
        assert quote["price"] == Market(1).quote("exchange1", symbol, NOW)[0]


@pytest.mark.parametrize("t", TIMES)
def test_pairs_agree_across_currencies_and_venues_within_the_deviation(t: float) -> None:
    clock = Clock(t)
    kraken, binance, coinbase = (realistic_app(v, clock) for v in ("kraken", "binance", "coinbase"))
    btcusd = price(kraken, "btcusd")
    assert 60_000 < btcusd < 130_000
    assert price(binance, "btcusdt") * price(kraken, "usdtusd") == pytest.approx(btcusd, rel=TRIANGLE)
    assert price(kraken, "ethbtc") * price(coinbase, "btcusd") == pytest.approx(
        price(kraken, "ethusd"), rel=TRIANGLE
    )
    assert price(binance, "ethbtc") * price(binance, "btcusdt") == pytest.approx(
        price(binance, "ethusdt"), rel=TRIANGLE
    )
    assert price(kraken, "btceur") * price(kraken, "eurusd") == pytest.approx(btcusd, rel=TRIANGLE)
    assert price(coinbase, "btcusd") == pytest.approx(btcusd, rel=2 * DEVIATION)
    assert price(coinbase, "btcusd") != btcusd  # each venue its own deviation
    # A synthetic coin is priced alike wherever it is listed.
    both = [s for s in realistic_markets("kraken", 300) if s in set(realistic_markets("coinbase", 300))]
    synthetic = next(s for s in both if s.endswith("usd") and s[:-3] not in ("btc", "eth", "usdt", "usdc"))
    assert price(kraken, synthetic) == pytest.approx(price(coinbase, synthetic), rel=2 * DEVIATION)


def test_pairs_outside_the_symbols_file_follow_the_usd_values() -> None:
    clock = Clock(NOW)
    app = create_app(name="okx", symbols=SYMBOLS, seed=1, clock=clock, venue="okx", listed=None)
    listed = markets(parse_args(["--venue", "okx", "--listed", "btcusdt,btcusd,usdtusd,solbtc"]))
    assert listed.symbols.ordered[-3:] == ("btcusd", "usdtusd", "solbtc")
    assert listed.own_paths == pricing.own_paths(SYMBOLS.ordered)
    exchange = app[EXCHANGE]
    exchange.list_only(listed.listed)
    assert exchange.quote("btcusd")["price"] == pytest.approx(price(app, "btcusdt"), rel=2 * DEVIATION)
    assert price(app, "solbtc") * price(app, "btcusdt") == pytest.approx(price(app, "solusdt"), rel=TRIANGLE)


async def kraken_prices(client: Any, *pairs: str) -> dict[str, float]:
    body = await (await client.get("/0/public/Ticker", params={"pair": ",".join(pairs)})).json()
    return {pair: float(ticker["c"][0]) for pair, ticker in body["result"].items()}


async def test_a_depeg_moves_the_pairs_quoted_in_that_coin_and_restoring_undoes_it(
    open_exchange: OpenExchange,
) -> None:
    known = markets(parse_args(["--venue", "kraken", "--universe", "realistic:300"]))
    client = await open_exchange(
        venue="kraken", symbols=known.symbols, listed=known.listed, own_paths=known.own_paths
    )
    pairs = ("USDTUSD", "XBTUSDT", "XETHZUSD", "USDCUSDT", "USDCUSD")
    before = await kraken_prices(client, *pairs)
    assert before["USDTUSD"] == pytest.approx(1.0, rel=DEVIATION)
    answer = await client.post("/mock/admin/pegs", json={"USDT": 0.97})
    assert await answer.json() == {"usdt": 0.97}
    assert await (await client.get("/mock/admin/pegs")).json() == {"usdt": 0.97}
    depegged = await kraken_prices(client, *pairs)
    # The same second, so the same deviation: the pegs alone make the difference.
    assert depegged["USDTUSD"] == pytest.approx(before["USDTUSD"] * 0.97, rel=1e-9)
    assert depegged["XBTUSDT"] == pytest.approx(before["XBTUSDT"] / 0.97, rel=1e-9)
    assert depegged["USDCUSDT"] == pytest.approx(before["USDCUSDT"] / 0.97, rel=1e-9)
    assert (depegged["XETHZUSD"], depegged["USDCUSD"]) == (before["XETHZUSD"], before["USDCUSD"])
    await client.post("/mock/admin/pegs", json={"usdc": 1.01})
    assert await (await client.post("/mock/admin/pegs", json={"usdt": None})).json() == {"usdc": 1.01}
    assert (await kraken_prices(client, "XBTUSDT")) == {"XBTUSDT": before["XBTUSDT"]}
    assert await (await client.delete("/mock/admin/pegs")).json() == {}
    assert await kraken_prices(client, *pairs) == before


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"usd": 0.9}',
        b'{"xyz": 1}',
        b'{"usdt": 0}',
        b'{"usdt": -1}',
        b'{"usdt": "0.9"}',
        b'{"usdt": true}',
        b'{"usdt": 1e400}',
        b'{"usdt": [1]}',
    ],
)
async def test_bad_pegs_are_refused_with_a_json_400(open_exchange: OpenExchange, body: bytes) -> None:
    client = await open_exchange()
    answer = await client.post("/mock/admin/pegs", data=body)
    assert answer.status == 400
    assert (await answer.json())["msg"].startswith("bad pegs: ")
    assert await (await client.get("/mock/admin/pegs")).json() == {}


def test_pegs_parse_to_values_or_restorations() -> None:
    assert parse_pegs({"USDC": 1, "eur": None}) == {"usdc": 1.0, "eur": None}
    with pytest.raises(PegsError, match="positive finite"):
        parse_pegs({"usdt": math.inf})
