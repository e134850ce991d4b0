"""Venue adapters on the venues' documented sample bodies (tests/fixtures/venues, sources in
docs/venues): listings, tickers, error envelopes and rate-limit answers; symbol mapping; the
EXCHANGES setting; the throttle's stops and back-off. Pure logic: no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.errors import ConfigError
from aggserver.exchanges.throttle import Held, Throttle
from aggserver.venues import VENUES, parse_exchanges, venue_for
from aggserver.venues.base import EnvelopeError, RateLimited, RatePolicy, Ticker, Venue, VenueError
from aggserver.venues.binance import Binance
from aggserver.venues.bybit import Bybit
from aggserver.venues.coinbase import Coinbase
from aggserver.venues.kraken import LEGACY_CODES, Kraken, common_code
from aggserver.venues.okx import Okx
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "venues"


def fixture(venue: str, name: str) -> Any:
    return json.loads((FIXTURES / venue / f"{name}.json").read_text())


def listing_of(venue: Venue) -> dict[str, str]:
    return {i.symbol: i.native for i in venue.parse_listing(fixture(venue.name, "listing"))}


def test_binance_listing_keeps_trading_symbols_and_reads_the_weight_budget() -> None:
    venue = Binance()
    listing = listing_of(venue)
    assert listing["btcusdt"] == "BTCUSDT"
    assert listing["ethbtc"] == "ETHBTC"
    assert "xmrusdt" not in listing  # status BREAK
    assert venue.listing_rate(fixture("binance", "listing")) == RatePolicy(capacity=6_000, window_seconds=60)


def test_binance_tickers_single_and_bulk() -> None:
    venue = Binance()
    bulk = venue.parse_tickers(fixture("binance", "tickers"))
    one = venue.parse_ticker(fixture("binance", "ticker"), "BTCUSDT")
    item = next(i for i in fixture("binance", "tickers") if i["symbol"] == "BTCUSDT")
    assert bulk["BTCUSDT"] == Ticker(
        native="BTCUSDT",
        price=float(item["lastPrice"]),
        volume=float(item["volume"]),
        timestamp_ms=float(item["closeTime"]),
    )
    assert isinstance(one, Ticker)
    assert one.price == float(fixture("binance", "ticker")["lastPrice"])
    assert {"BTCUSDT", "ETHUSDT"} <= set(bulk)


@pytest.mark.parametrize(
    ("status", "body", "headers", "limited", "retry_after"),
    [
        (429, "error_rate_limited", {"Retry-After": "30"}, True, 30.0),
        (418, "error_ip_banned", {"Retry-After": "120"}, True, 120.0),
        (400, "error_invalid_symbol", {}, False, None),
    ],
)
def test_binance_error_answers(
    status: int, body: str, headers: dict[str, str], limited: bool, retry_after: float | None
) -> None:
    with pytest.raises(VenueError) as caught:
        Binance().check_status(status, fixture("binance", body), headers)
    assert isinstance(caught.value, RateLimited) is limited
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == retry_after
    else:
        assert "code -1121 Invalid symbol." in str(caught.value)


def test_binance_reports_the_weight_used() -> None:
    rate = RatePolicy(capacity=6_000, window_seconds=60)
    assert Binance().used_share({"X-MBX-USED-WEIGHT-1M": "1500"}, rate) == 0.25
    assert Binance().used_share({}, rate) is None


def test_okx_listing_tickers_and_envelopes() -> None:
    venue = Okx()
    listing = listing_of(venue)
    assert listing["btcusdt"] == "BTC-USDT"
    assert "xmrusdt" not in listing  # state suspend
    bulk = venue.parse_tickers(fixture("okx", "tickers"))
    item = fixture("okx", "tickers")["data"][0]
    assert bulk[item["instId"]] == Ticker(
        native=item["instId"],
        price=float(item["last"]),
        volume=float(item["vol24h"]),
        timestamp_ms=float(item["ts"]),
    )
    assert isinstance(venue.parse_ticker(fixture("okx", "ticker"), "BTC-USDT"), Ticker)
    with pytest.raises(EnvelopeError, match="code 51001"):
        venue.parse_ticker(fixture("okx", "error_invalid_symbol"), "NOPE-USDT")
    with pytest.raises(RateLimited, match="50011"):
        venue.parse_tickers(fixture("okx", "error_rate_limited"))
    with pytest.raises(RateLimited):
        venue.check_status(429, fixture("okx", "error_rate_limited"), {})


def test_bybit_listing_tickers_and_envelopes() -> None:
    venue = Bybit()
    assert listing_of(venue)["btcusdt"] == "BTCUSDT"
    body = fixture("bybit", "tickers")
    bulk = venue.parse_tickers(body)
    item = body["result"]["list"][0]
    # Bybit's tickers carry no time of their own: the envelope's time stands for all of them.
    assert bulk[item["symbol"]] == Ticker(
        native=item["symbol"],
        price=float(item["lastPrice"]),
        volume=float(item["volume24h"]),
        timestamp_ms=float(body["time"]),
    )
    assert isinstance(venue.parse_ticker(fixture("bybit", "ticker"), "BTCUSDT"), Ticker)
    with pytest.raises(EnvelopeError, match="retCode 10001"):
        venue.parse_ticker(fixture("bybit", "error_invalid_symbol"), "NOPEUSDT")
    with pytest.raises(RateLimited, match="10006"):
        venue.parse_tickers(fixture("bybit", "error_rate_limited"))
    with pytest.raises(RateLimited, match="403"):
        venue.check_status(403, None, {})


def test_kraken_listing_maps_its_asset_codes() -> None:
    listing = listing_of(Kraken())
    assert listing["btcusd"] == "XXBTZUSD"
    assert listing["ethusd"] == "XETHZUSD"
    assert listing["btcusdt"] == "XBTUSDT"
    assert listing["solusd"] == "SOLUSD"


def test_kraken_tickers_have_no_time_and_take_the_24h_volume() -> None:
    body = fixture("kraken", "tickers")
    tickers = Kraken().parse_tickers(body)
    item = body["result"]["XXBTZUSD"]
    assert tickers["XXBTZUSD"] == Ticker(
        native="XXBTZUSD", price=float(item["c"][0]), volume=float(item["v"][1]), timestamp_ms=None
    )
    assert isinstance(Kraken().parse_ticker(fixture("kraken", "ticker"), "XXBTZUSD"), Ticker)


@pytest.mark.parametrize(
    ("body", "limited"),
    [
        ("error_rate_limited", True),
        ("error_too_many_requests", True),
        ("error_unknown_pair", False),
        ("error_service_unavailable", False),
        ("error_service_busy", False),
    ],
)
def test_kraken_error_lists(body: str, limited: bool) -> None:
    with pytest.raises(EnvelopeError if not limited else RateLimited) as caught:
        Kraken().parse_tickers(fixture("kraken", body))
    assert fixture("kraken", body)["error"][0] in str(caught.value)


def test_coinbase_listing_ticker_and_errors() -> None:
    venue = Coinbase()
    listing = listing_of(venue)
    assert listing["btcusd"] == "BTC-USD"
    assert "repusd" not in listing  # delisted
    ticker = venue.parse_ticker(fixture("coinbase", "ticker"), "BTC-USD")
    assert isinstance(ticker, Ticker)
    assert (ticker.price, ticker.volume) == (6268.48, 53602.03940154)
    assert ticker.timestamp_ms == pytest.approx(1_584_663_777_833.897)  # 2020-03-20T00:22:57.833897Z
    with pytest.raises(VenueError, match="HTTP 404: NotFound"):
        venue.check_status(404, fixture("coinbase", "error_not_found"), {})
    with pytest.raises(RateLimited):
        venue.check_status(429, fixture("coinbase", "error_rate_limited"), {})


@pytest.mark.parametrize(
    ("venue", "payload", "reason"),
    [
        (
            Binance(),
            [{"symbol": "BTCUSDT", "lastPrice": "abc", "volume": "1", "closeTime": 1}],
            "lastPrice is not a number: 'abc'",
        ),
        (
            Okx(),
            {"code": "0", "data": [{"instId": "A-B", "last": "NaN", "vol24h": "1", "ts": "1"}]},
            "last is not finite",
        ),
        (
            Bybit(),
            {"retCode": 0, "result": {"list": [{"symbol": "AB", "lastPrice": "1"}]}, "time": 1},
            "volume24h is not a number",
        ),
        (Kraken(), {"error": [], "result": {"AB": {"c": ["1"], "v": ["2"]}}}, "c or v is not a list"),
    ],
)
def test_a_bad_field_spoils_only_its_ticker(venue: Venue, payload: object, reason: str) -> None:
    (outcome,) = venue.parse_tickers(payload).values()
    assert outcome == QuoteRejected(ReasonCode.BAD_BODY, reason)


def test_common_codes() -> None:
    assert common_code("XXBT") == "BTC"
    assert common_code("XBT") == "BTC"
    assert common_code("XXDG") == "DOGE"
    assert common_code("ZUSD") == "USD"
    assert common_code("XTZ") == "XTZ"  # a real three-letter code, not a prefixed one
    assert common_code("SOL") == "SOL"


CODES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=8)


def _listing_body(venue: str, pairs: list[tuple[str, str]]) -> tuple[object, list[str]]:
    """A listing answer in ``venue``'s shape for (base, quote) pairs, and each pair's native name."""
    if venue == "binance":
        natives = [b + q for b, q in pairs]
        body: object = {
            "symbols": [
                {"symbol": n, "status": "TRADING", "baseAsset": b, "quoteAsset": q}
                for n, (b, q) in zip(natives, pairs, strict=True)
            ]
        }
    elif venue == "okx":
        natives = [f"{b}-{q}" for b, q in pairs]
        body = {
            "code": "0",
            "data": [
                {"instId": n, "baseCcy": b, "quoteCcy": q, "state": "live"}
                for n, (b, q) in zip(natives, pairs, strict=True)
            ],
        }
    elif venue == "bybit":
        natives = [b + q for b, q in pairs]
        body = {
            "retCode": 0,
            "result": {
                "list": [
                    {"symbol": n, "baseCoin": b, "quoteCoin": q, "status": "Trading"}
                    for n, (b, q) in zip(natives, pairs, strict=True)
                ]
            },
        }
    elif venue == "kraken":
        natives = [f"K{b}{q}" for b, q in pairs]
        body = {
            "error": [],
            "result": {
                n: {"wsname": f"{b}/{q}", "status": "online"}
                for n, (b, q) in zip(natives, pairs, strict=True)
            },
        }
    else:
        natives = [f"{b}-{q}" for b, q in pairs]
        body = [
            {"id": n, "base_currency": b, "quote_currency": q, "status": "online"}
            for n, (b, q) in zip(natives, pairs, strict=True)
        ]
    return body, natives


@pytest.mark.parametrize("name", sorted(VENUES))
@given(pairs=st.lists(st.tuples(CODES, CODES), min_size=1, max_size=20, unique_by=lambda p: p[0] + p[1]))
def test_symbol_mapping_round_trips(name: str, pairs: list[tuple[str, str]]) -> None:
    venue = VENUES[name]()
    body, natives = _listing_body(name, pairs)
    instruments = venue.parse_listing(body)
    ours_to_native = {i.symbol: i.native for i in instruments}
    native_to_ours = {i.native: i.symbol for i in instruments}
    for native, (base, quote) in zip(natives, pairs, strict=True):
        ours = native_to_ours[native]
        if name == "kraken":
            base, quote = common_code(base), common_code(quote)
        assert ours == (base + quote).lower()
        # Both ways: two listed pairs may spell the same symbol (AB+C and A+BC), then the later wins.
        assert ours_to_native[ours] in natives


def test_kraken_legacy_codes_all_map_to_three_letter_ones() -> None:
    assert all(
        len(common_code(code)) >= 3 and not common_code(code).startswith(("XX", "ZZ"))
        for code in LEGACY_CODES
    )


def test_exchanges_setting() -> None:
    configs = parse_exchanges("binance, okx=http://127.0.0.1:9000/ ,mockex=http://127.0.0.1:8081/mock/ticker")
    assert [(c.venue, c.name, c.base_url) for c in configs] == [
        ("binance", "binance", "https://api.binance.com"),
        ("okx", "okx", "http://127.0.0.1:9000"),
        ("mockex", "127.0.0.1:8081", "http://127.0.0.1:8081/mock/ticker"),
    ]
    assert venue_for(configs[2]).origin(configs[2].base_url) == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("binanse", "unknown venue 'binanse'"),
        ("okx=ftp://x", "not an http"),
        ("mockex", "needs its ticker URL"),
        ("binance,binance=http://a:1", "more than once"),
    ],
)
def test_bad_exchanges_settings(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_exchanges(raw)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_throttle_stops_for_retry_after_then_backs_off_exponentially() -> None:
    clock = Clock()
    throttle = Throttle("v", capacity=10, window_seconds=1, clock=clock)
    assert throttle.limited(30) == 30
    with pytest.raises(Held, match="another 30 s"):
        await throttle.acquire(1, urgent=True)
    clock.now += 30
    await throttle.acquire(1, urgent=True)
    pauses = [throttle.limited(None) for _ in range(4)]
    assert pauses == [2.0, 4.0, 8.0, 16.0]
    throttle.answered()
    assert throttle.limited(None) == 2.0
    assert (throttle.rate_limited, throttle.held) == (6, 1)


async def test_throttle_keeps_a_reserve_for_urgent_work() -> None:
    throttle = Throttle("v", capacity=4, window_seconds=60)
    await throttle.acquire(3, urgent=False)  # 3 of 4 used: only one unit left, the reserve
    with pytest.raises(Held, match="kept for hot assets"):
        await throttle.acquire(1, urgent=False)
    await throttle.acquire(1, urgent=True)


def test_throttle_share_stretches_the_window() -> None:
    throttle = Throttle("v", capacity=6_000, window_seconds=60, share=0.5)
    assert throttle.budget == RatePolicy(capacity=6_000, window_seconds=60)
    assert throttle._limiter.time_period == 120
