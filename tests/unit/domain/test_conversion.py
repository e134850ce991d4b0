"""The universe from listings, and USD prices through measured rates (pure rules)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggserver.domain.aggregate import QuotePolicy, aggregate, select_quotes
from aggserver.domain.conversion import Leg, Rate, convert, plan_conversions
from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import ReasonCode
from aggserver.domain.symbols import Pair
from aggserver.domain.universe import csv_rows, ranked, venue_universe

RATES = ("usdt", "usdc", "eur", "btc", "eth")
NOW = 1_800_000_000.0
POLICY = QuotePolicy()


def pair(symbol: str, base: str, quote: str, *venues: str) -> Pair:
    return Pair(symbol, base, quote, venues)


def quote(source: str, symbol: str, price: float, volume: float, at: float = NOW) -> Quote:
    return Quote(source=source, symbol=symbol, price=price, volume=volume, timestamp=int(at))


def measured(currency: str, price: float, at: float = NOW) -> Rate:
    return Rate(currency, price, at, via=frozenset({currency}))


# --- the universe ------------------------------------------------------------------------


def test_the_venues_universe_keeps_the_wanted_quotes_listed_often_enough() -> None:
    listings = {
        "binance": [
            pair("btcusdt", "btc", "usdt"),
            pair("ethbtc", "eth", "btc"),
            pair("btctry", "btc", "try"),
        ],
        "kraken": [pair("btcusdt", "btc", "usdt"), pair("btcusd", "btc", "usd")],
    }
    every = venue_universe(listings, quotes=("usd", "usdt", "btc"), min_venues=1)
    assert every == {
        "btcusdt": pair("btcusdt", "btc", "usdt", "binance", "kraken"),
        "ethbtc": pair("ethbtc", "eth", "btc", "binance"),
        "btcusd": pair("btcusd", "btc", "usd", "kraken"),
    }
    assert list(venue_universe(listings, quotes=("usd", "usdt", "btc"), min_venues=2)) == ["btcusdt"]


def test_the_universe_ranks_bases_by_listings_each_usd_price_before_its_pairs() -> None:
    pairs = {
        "ethusdt": pair("ethusdt", "eth", "usdt", "a"),
        "btcusdt": pair("btcusdt", "btc", "usdt", "a", "b"),
        "btcusd": pair("btcusd", "btc", "usd", "b"),
        "solusdt": pair("solusdt", "sol", "usdt", "a"),
    }
    usd = {"btc": "btc-usd", "eth": "eth-usd"}
    hint = {"solusdt": 0, "ethusdt": 1}
    assert ranked(pairs, usd, hint) == ("btc-usd", "btcusdt", "btcusd", "solusdt", "eth-usd", "ethusdt")
    assert csv_rows(pairs, ["btc-usd", "btcusdt", "ethusdt"]) == [
        "symbol,base,quote,venues",
        "btcusdt,btc,usdt,a b",
        "ethusdt,eth,usdt,a",
    ]


# --- the plan ----------------------------------------------------------------------------

MARKETS = [
    pair("btcusd", "btc", "usd"),
    pair("btcusdt", "btc", "usdt"),
    pair("usdtusd", "usdt", "usd"),
    pair("usdusdc", "usd", "usdc"),
    pair("usdcusdt", "usdc", "usdt"),
    pair("ethbtc", "eth", "btc"),
    pair("ethusdt", "eth", "usdt"),
    pair("soleth", "sol", "eth"),
    pair("dogetry", "doge", "try"),
]


def test_rates_come_only_from_currencies_before_them_and_first() -> None:
    plan = plan_conversions(MARKETS, RATES)
    assert plan.legs["usdt-usd"] == (Leg("usdtusd", "usd"),)
    assert plan.legs["usdc-usd"] == (Leg("usdusdc", "usd", inverted=True), Leg("usdcusdt", "usdt"))
    assert plan.legs["btc-usd"] == (Leg("btcusd", "usd"), Leg("btcusdt", "usdt"))
    assert plan.legs["eth-usd"] == (Leg("ethbtc", "btc"), Leg("ethusdt", "usdt"))
    assert plan.legs["sol-usd"] == (Leg("soleth", "eth"),)
    assert "doge-usd" not in plan.legs  # TRY has no rate
    assert plan.order[:4] == ("usdt-usd", "usdc-usd", "btc-usd", "eth-usd")
    # A move of USDT/USD reaches every price that converts through USDT, rates first.
    assert plan.dependents(["usdtusd"]) == ["usdt-usd", "usdc-usd", "btc-usd", "eth-usd", "sol-usd"]
    assert plan.dependents(["soleth"]) == ["sol-usd"]


def test_a_currency_nothing_prices_converts_nothing_unless_pegged() -> None:
    markets = [pair("btcusdt", "btc", "usdt"), pair("ethusdt", "eth", "usdt")]
    assert plan_conversions(markets, RATES).legs == {}
    pegged = plan_conversions(markets, RATES, pegs=("usdt",))
    assert sorted(pegged.legs) == ["btc-usd", "eth-usd"]
    assert "usdt-usd" not in pegged.legs


# --- conversion --------------------------------------------------------------------------


def usd_price(
    asset: str, legs: tuple[Leg, ...], quotes: dict[str, list[Quote]], rates: dict[str, Rate]
) -> float:
    conversion = convert(asset, legs, quotes, rates, now=NOW, max_rate_age=120)
    selection = select_quotes(conversion.quotes, now=NOW, policy=POLICY)
    return aggregate(asset, selection.accepted).price


# BTC/USD on one venue, BTC/USDT on two, USDT/USD on one.
BTC_MARKETS = [pair("btcusd", "btc", "usd"), pair("btcusdt", "btc", "usdt"), pair("usdtusd", "usdt", "usd")]
BTC_QUOTES = {
    "btcusd": [quote("kraken", "btcusd", 91_000.0, 10.0)],
    "btcusdt": [quote("binance", "btcusdt", 91_100.0, 30.0), quote("okx", "btcusdt", 91_050.0, 20.0)],
    "usdtusd": [quote("kraken", "usdtusd", 0.999, 1_000_000.0)],
}


def test_btc_usd_is_the_vwap_of_its_markets_converted_at_the_measured_rate() -> None:
    plan = plan_conversions(BTC_MARKETS, RATES)
    rate = usd_price("usdt-usd", plan.legs["usdt-usd"], BTC_QUOTES, {})
    assert rate == 0.999
    price = usd_price("btc-usd", plan.legs["btc-usd"], BTC_QUOTES, {"usdt": measured("usdt", rate)})
    by_hand = (91_000.0 * 10 + 91_100.0 * 0.999 * 30 + 91_050.0 * 0.999 * 20) / 60
    assert price == pytest.approx(by_hand, rel=1e-12)


def test_a_depeg_moves_every_usdt_contribution() -> None:
    plan = plan_conversions(BTC_MARKETS, RATES)
    # USDT at 0.97: the USDT-quoted venues quote 1/0.97 more USDT for the same bitcoin.
    depegged = {
        "btcusd": [quote("kraken", "btcusd", 91_000.0, 10.0)],
        "btcusdt": [
            quote("binance", "btcusdt", 91_000 / 0.97, 30.0),
            quote("okx", "btcusdt", 91_000 / 0.97, 20.0),
        ],
    }
    honest = usd_price("btc-usd", plan.legs["btc-usd"], depegged, {"usdt": measured("usdt", 0.97)})
    assert honest == pytest.approx(91_000.0, rel=1e-12)
    # Assuming USDT = USD would have priced BTC 3 % high (weighted by the USDT markets' volume).
    assumed = usd_price("btc-usd", plan.legs["btc-usd"], depegged, {"usdt": measured("usdt", 1.0)})
    assert assumed == pytest.approx((91_000 * 10 + 91_000 / 0.97 * 50) / 60, rel=1e-12)


def test_a_stale_or_missing_rate_excludes_its_markets_with_a_reason() -> None:
    plan = plan_conversions(BTC_MARKETS, RATES)
    stale = convert(
        "btc-usd",
        plan.legs["btc-usd"],
        BTC_QUOTES,
        {"usdt": measured("usdt", 1.0, at=NOW - 600)},
        now=NOW,
        max_rate_age=120,
    )
    assert [q.source for q in stale.quotes] == ["kraken:btcusd"]
    assert {s: r.code for s, r in stale.rejected.items()} == {
        "binance:btcusdt": ReasonCode.STALE_RATE,
        "okx:btcusdt": ReasonCode.STALE_RATE,
    }
    assert stale.converted["okx:btcusdt"].rate_age == 600
    missing = convert("btc-usd", plan.legs["btc-usd"], BTC_QUOTES, {}, now=NOW, max_rate_age=120)
    assert missing.rejected["binance:btcusdt"].code is ReasonCode.NO_RATE
    assert missing.converted["binance:btcusdt"].price is None


def test_eth_btc_contributes_to_eth_usd_through_btc_usd() -> None:
    markets = [pair("ethbtc", "eth", "btc"), pair("ethusd", "eth", "usd")]
    plan = plan_conversions([*markets, pair("btcusd", "btc", "usd")], RATES)
    quotes = {
        "ethbtc": [quote("binance", "ethbtc", 0.0335, 100.0)],
        "ethusd": [quote("coinbase", "ethusd", 3_050.0, 50.0)],
    }
    price = usd_price("eth-usd", plan.legs["eth-usd"], quotes, {"btc": measured("btc", 91_000.0)})
    assert price == pytest.approx((0.0335 * 91_000 * 100 + 3_050 * 50) / 150, rel=1e-12)


def test_an_inverted_market_gives_the_rate_and_weights_by_its_base() -> None:
    plan = plan_conversions([pair("usdusdc", "usd", "usdc")], RATES)
    conversion = convert(
        "usdc-usd",
        plan.legs["usdc-usd"],
        {"usdusdc": [quote("kraken", "usdusdc", 1.0 / 0.998, 5_000.0)]},
        {},
        now=NOW,
        max_rate_age=120,
    )
    (converted,) = conversion.quotes
    assert converted.price == pytest.approx(0.998)
    assert converted.volume == pytest.approx(5_000.0 / 0.998)


# --- no rate through its own asset ---------------------------------------------------------

CODES = ("usd", *RATES, "sol", "xrp")


@st.composite
def market_graphs(draw: st.DrawFn) -> list[Pair]:
    chosen = draw(st.lists(st.tuples(st.sampled_from(CODES), st.sampled_from(CODES)), max_size=30))
    return [pair(f"{b}{q}", b, q) for b, q in dict.fromkeys(chosen) if b != q]


@settings(max_examples=300, deadline=None)
@given(markets=market_graphs(), pegs=st.sets(st.sampled_from(RATES)))
def test_no_rate_is_derived_through_the_asset_it_converts(markets: list[Pair], pegs: set[str]) -> None:
    plan = plan_conversions(markets, RATES, pegs)
    quotes = {m.symbol: [quote("venue", m.symbol, 1.0 + len(m.symbol) / 10, 1.0)] for m in markets}
    rates: dict[str, Rate] = {c: Rate(c, 1.0, NOW, assumed=True, via=frozenset({c})) for c in pegs}
    # Twice, as the service runs on: the second pass converts at the rates the first one made.
    for _ in range(2):
        for asset in plan.order:
            base = asset.removesuffix("-usd")
            conversion = convert(asset, plan.legs[asset], quotes, rates, now=NOW, max_rate_age=120)
            assert base not in conversion.via
            assert all(math.isfinite(q.price) and q.price > 0 for q in conversion.quotes)
            if base in RATES and conversion.quotes:
                price = aggregate(asset, conversion.quotes).price
                rates[base] = Rate(base, price, NOW, via=conversion.via | {base})
    assert set(plan.order) == set(plan.legs)
