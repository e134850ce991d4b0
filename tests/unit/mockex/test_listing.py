"""Listing any pair: the venues' listing answers name its base and quote, the listing can be set
by name at run time, and the command line lists pairs or a realistic universe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mockex.cli import markets, parse_args
from mockex.symbols import SymbolList, split_symbol
from mockex.universe import realistic_markets
from tests.unit.mockex.apps import SYMBOLS
from tests.unit.mockex.conftest import OpenExchange

OUTSIDE = ("btcusd", "usdtusd", "usdcusd", "ethbtc", "btceur", "eurusd", "btcusdc", "bnbusd", "usdcusdt")
EXPECTED = {
    "btcusd": ("BTC", "USD"),
    "usdtusd": ("USDT", "USD"),
    "usdcusd": ("USDC", "USD"),
    "ethbtc": ("ETH", "BTC"),
    "btceur": ("BTC", "EUR"),
    "eurusd": ("EUR", "USD"),
    "btcusdc": ("BTC", "USDC"),
    "bnbusd": ("BNB", "USD"),  # not BN/BUSD
    "usdcusdt": ("USDC", "USDT"),
}
# Kraken's asset codes, back to ours.
KRAKEN_CODES = {"XXBT": "BTC", "XETH": "ETH", "ZUSD": "USD", "ZEUR": "EUR"}

Listing = Callable[[Any], dict[str, tuple[str, str]]]


def binance(body: Any) -> dict[str, tuple[str, str]]:
    return {
        s["symbol"]: (s["baseAsset"], s["quoteAsset"]) for s in body["symbols"] if s["status"] == "TRADING"
    }


def okx(body: Any) -> dict[str, tuple[str, str]]:
    return {i["instId"]: (i["baseCcy"], i["quoteCcy"]) for i in body["data"] if i["state"] == "live"}


def bybit(body: Any) -> dict[str, tuple[str, str]]:
    return {i["symbol"]: (i["baseCoin"], i["quoteCoin"]) for i in body["result"]["list"]}


def kraken(body: Any) -> dict[str, tuple[str, str]]:
    return {
        native: (KRAKEN_CODES.get(p["base"], p["base"]), KRAKEN_CODES.get(p["quote"], p["quote"]))
        for native, p in body["result"].items()
        if p["status"] == "online"
    }


def coinbase(body: Any) -> dict[str, tuple[str, str]]:
    return {p["id"]: (p["base_currency"], p["quote_currency"]) for p in body if p["status"] == "online"}


LISTINGS: dict[str, tuple[str, Listing]] = {
    "binance": ("/api/v3/exchangeInfo", binance),
    "okx": ("/api/v5/public/instruments?instType=SPOT", okx),
    "bybit": ("/v5/market/instruments-info?category=spot", bybit),
    "kraken": ("/0/public/AssetPairs", kraken),
    "coinbase": ("/products", coinbase),
}
# How each venue answers one ticker: path, parameters and the price in the answer.
TICKERS: dict[str, Callable[[str], tuple[str, dict[str, str], Callable[[Any], str]]]] = {
    "binance": lambda n: ("/api/v3/ticker/24hr", {"symbol": n}, lambda b: b["lastPrice"]),
    "okx": lambda n: ("/api/v5/market/ticker", {"instId": n}, lambda b: b["data"][0]["last"]),
    "bybit": lambda n: (
        "/v5/market/tickers",
        {"category": "spot", "symbol": n},
        lambda b: b["result"]["list"][0]["lastPrice"],
    ),
    "kraken": lambda n: ("/0/public/Ticker", {"pair": n}, lambda b: b["result"][n]["c"][0]),
    "coinbase": lambda n: (f"/products/{n}/ticker", {}, lambda b: b["price"]),
}


async def listing(client: Any, venue: str) -> dict[str, tuple[str, str]]:
    path, read = LISTINGS[venue]
    return read(await (await client.get(path)).json())


async def ticker_price(client: Any, venue: str, native: str) -> float:
    path, params, read = TICKERS[venue](native)
    return float(read(await (await client.get(path, params=params)).json()))


@pytest.mark.parametrize("venue", sorted(LISTINGS))
async def test_pairs_outside_the_symbols_file_are_listed_with_their_base_and_quote(
    open_exchange: OpenExchange, venue: str
) -> None:
    assert not set(OUTSIDE) - {"ethbtc"} & set(SYMBOLS.ordered)
    client = await open_exchange(venue=venue, listed=SymbolList(OUTSIDE))
    listed = await listing(client, venue)
    assert sorted(listed.values()) == sorted(EXPECTED.values())
    natives = {pair: native for native, pair in listed.items()}
    usdtusd = natives[EXPECTED["usdtusd"]]
    assert await ticker_price(client, venue, usdtusd) == pytest.approx(1.0, rel=0.001)
    assert 60_000 < await ticker_price(client, venue, natives[EXPECTED["btcusd"]]) < 130_000
    await client.post("/mock/admin/quotes", json={"usdtusd": {"price": 0.5}})
    assert await ticker_price(client, venue, usdtusd) == 0.5


def test_symbols_split_into_the_base_and_quote_the_listings_show() -> None:
    assert {s: split_symbol(s) for s in OUTSIDE} == EXPECTED
    assert split_symbol("xyzbusd") == ("XYZ", "BUSD")


async def test_the_listing_is_set_by_name_at_run_time(open_exchange: OpenExchange) -> None:
    client = await open_exchange(venue="binance", listed=SymbolList(("btcusdt", "ethusdt", "dogeusdt")))
    answer = await client.post("/mock/admin/listing", json={"symbols": ["BTCUSD", "ethusdt", "usdtusd"]})
    assert await answer.json() == {"listed": 3, "symbols": ["btcusd", "ethusdt", "usdtusd"]}
    assert set(await listing(client, "binance")) == {"BTCUSD", "ETHUSDT", "USDTUSD"}
    tickers = await (await client.get("/api/v3/ticker/24hr")).json()
    assert {t["symbol"] for t in tickers} == {"BTCUSD", "ETHUSDT", "USDTUSD"}
    assert 60_000 < await ticker_price(client, "binance", "BTCUSD") < 130_000
    shown = await (await client.get("/mock/admin/listing")).json()
    assert shown["symbols"] == ["btcusd", "ethusdt", "usdtusd"]
    # A count lists the first symbols the exchange knows: the file's, then those it was given.
    assert (await (await client.post("/mock/admin/listing", json={"listed": 2})).json())["listed"] == 2
    assert set(await listing(client, "binance")) == {"BTCUSDT", "ETHUSDT"}
    everything = await client.post("/mock/admin/listing", json={"listed": len(SYMBOLS) + 2})
    assert (await everything.json())["symbols"][-2:] == ["btcusd", "usdtusd"]


async def test_mockex_format_quotes_the_pairs_it_is_given_outside_the_file(
    open_exchange: OpenExchange,
) -> None:
    client = await open_exchange(listed=SymbolList(("btcusd", "ethbtc")))
    quote = await (await client.get("/mock/ticker/btcusd")).json()
    assert 60_000 < quote["price"] < 130_000
    assert (await client.get("/mock/ticker/solusd")).status == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"x": 1}',
        b'{"listed": 0}',
        b'{"listed": true}',
        b'{"listed": "3"}',
        b'{"listed": 1e9}',
        b'{"symbols": []}',
        b'{"symbols": "btcusd"}',
        b'{"symbols": ["btc usd"]}',
        b'{"symbols": [1]}',
        b'{"listed": 2, "symbols": ["btcusd"]}',
    ],
)
async def test_bad_listings_are_refused_with_a_json_400(open_exchange: OpenExchange, body: bytes) -> None:
    client = await open_exchange(venue="okx", listed=SymbolList(("btcusdt",)))
    answer = await client.post("/mock/admin/listing", data=body)
    assert answer.status == 400
    assert (await answer.json())["msg"].startswith("bad listing: ")
    assert set(await listing(client, "okx")) == {"BTC-USDT"}


async def test_a_realistic_venue_lists_its_universe_and_shows_another_venues_pair_not_trading(
    open_exchange: OpenExchange,
) -> None:
    known = markets(parse_args(["--venue", "binance", "--universe", "realistic:300"]))
    assert known.listed.ordered == realistic_markets("binance", 300)
    assert not known.own_paths
    client = await open_exchange(
        venue="binance", symbols=known.symbols, listed=known.listed, own_paths=known.own_paths
    )
    info = await (await client.get("/api/v3/exchangeInfo")).json()
    assert len(info["symbols"]) == 301
    delisted = [s for s in info["symbols"] if s["status"] == "BREAK"]
    assert len(delisted) == 1
    pair = (delisted[0]["baseAsset"] + delisted[0]["quoteAsset"]).lower()
    assert pair in set(realistic_markets("coinbase", 300)) | set(realistic_markets("kraken", 300))


@pytest.mark.parametrize(
    "argv",
    [
        ["--universe", "realistic"],
        ["--venue", "okx", "--universe", "realistic", "--listed", "10"],
        ["--venue", "okx", "--universe", "realistic:0"],
        ["--venue", "okx", "--universe", "huge"],
        ["--venue", "okx", "--listed", "btc-usd"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_command_line_universe_sizes() -> None:
    assert parse_args(["--venue", "okx", "--universe", "realistic"]).universe == 1_500
    assert parse_args(["--venue", "okx", "--universe", "realistic:40"]).universe == 40
    assert parse_args(["--venue", "okx"]).listed == 1_000
    assert parse_args(["--listed", "BTCUSD, ethbtc"]).listed == ("btcusd", "ethbtc")
