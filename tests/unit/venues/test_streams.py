"""Venue ticker streams: parsing the venues' documented frames (tests/fixtures/streams, shapes from
the sources cited in each venue module), subscriptions within the venues' limits, stream settings."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.errors import ConfigError
from aggserver.exchanges.ingest import stream_urls
from aggserver.settings import Settings
from aggserver.venues.base import Ticker, VenueError
from aggserver.venues.binance import BinanceStream
from aggserver.venues.bybit import BybitStream
from aggserver.venues.okx import OkxStream
from aggserver.venues.streams import STREAMS
from tests.paths import FIXTURES

FIXTURES = FIXTURES / "streams"


LISTED = 40


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_binance_mini_tickers() -> None:
    frame = BinanceStream().parse(fixture("binance_mini_tickers.json"))
    assert frame.tickers == [
        Ticker(native="BTCUSDT", price=67012.3, volume=6312.45678, timestamp_ms=1717000000123),
        Ticker(native="ETHUSDT", price=3765.43, volume=81234.5, timestamp_ms=1717000000123),
    ]
    assert frame.rejected == []
    # A shard's owner keeps only its instruments of the all-market array.
    mine = BinanceStream().parse(fixture("binance_mini_tickers.json"), frozenset({"ETHUSDT"}))
    assert [t.native for t in mine.tickers] == ["ETHUSDT"]


def test_okx_pushes_acknowledgements_pongs_and_errors() -> None:
    stream = OkxStream()
    frame = stream.parse(fixture("okx_tickers_push.json"))
    assert frame.tickers == [
        Ticker(native="BTC-USDT", price=67012.3, volume=6312.45678901, timestamp_ms=1717000000123)
    ]
    assert stream.parse(fixture("okx_subscribe_ack.json")).tickers == []
    assert stream.parse("pong").tickers == []
    with pytest.raises(VenueError, match="60018"):
        stream.parse(fixture("okx_error.json"))


def test_bybit_snapshots_acknowledgements_and_refusals() -> None:
    stream = BybitStream()
    frame = stream.parse(fixture("bybit_ticker_snapshot.json"))
    assert frame.tickers == [
        Ticker(native="BTCUSDT", price=67012.3, volume=6312.456789, timestamp_ms=1717000000123)
    ]
    assert stream.parse(fixture("bybit_subscribe_ack.json")).tickers == []
    assert stream.parse(fixture("bybit_pong.json")).tickers == []
    with pytest.raises(VenueError, match="args size"):
        stream.parse(fixture("bybit_refused.json"))


def test_a_bad_field_spoils_only_its_own_ticker() -> None:
    events = orjson.loads(fixture("binance_mini_tickers.json"))
    events[0]["c"] = "lots"
    frame = BinanceStream().parse(orjson.dumps(events).decode())
    assert [t.native for t in frame.tickers] == ["ETHUSDT"]
    assert frame.rejected == [("BTCUSDT", QuoteRejected(ReasonCode.BAD_BODY, "c is not a number: 'lots'"))]


@pytest.mark.parametrize("text", ["not json", "[1, 2", '"a string"', "42"])
@pytest.mark.parametrize("venue", sorted(STREAMS))
def test_frames_that_are_not_the_venues_are_errors(venue: str, text: str) -> None:
    with pytest.raises(VenueError):
        STREAMS[venue].parse(text)


@given(
    st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=3, max_size=12), max_size=350)
)
def test_subscriptions_name_every_instrument_once_within_the_venues_limits(natives: list[str]) -> None:
    for stream, limit in ((OkxStream(), 100), (BybitStream(), 10)):
        named: list[str] = []
        for text in stream.subscriptions(natives):
            frame = orjson.loads(text)
            assert frame["op"] == "subscribe"
            assert 1 <= len(frame["args"]) <= limit
            assert len(text.encode()) < 64 * 1024
            named += [
                a["instId"] if isinstance(a, dict) else a.removeprefix("tickers.") for a in frame["args"]
            ]
        assert named == natives
    assert BinanceStream().subscriptions(natives) == []


def test_stream_settings() -> None:
    venues = "binance=http://127.0.0.1:9001,kraken=http://127.0.0.1:9002"
    streaming = Settings.from_env({"EXCHANGES": venues})
    assert streaming.ingest == "stream"
    assert streaming.history_deviation == 0.005  # the gate is on while venues stream
    assert stream_urls(streaming) == {"binance": "ws://127.0.0.1:9001"}  # kraken has no stream
    polled = Settings.from_env({"EXCHANGES": venues, "INGEST": "poll", "UNIVERSE": "file"})
    assert (polled.history_deviation, stream_urls(polled)) == (0.0, {})
    # Polled too, but the venues' universe: thousands of pairs, gated by default.
    assert Settings.from_env({"EXCHANGES": venues, "INGEST": "poll"}).history_deviation == 0.005
    assert Settings.from_env({}).history_deviation == 0.0  # mockex-format exchanges: polled
    chosen = Settings.from_env({"EXCHANGES": venues, "HISTORY_DEVIATION": "0"})
    assert chosen.history_deviation == 0.0
    public = Settings.from_env(
        {"EXCHANGES": "binance,okx", "EXCHANGE_STREAMS": "okx=wss://proxy.example/okx"}
    )
    assert stream_urls(public) == {"binance": BinanceStream.default_url, "okx": "wss://proxy.example/okx"}
    with pytest.raises(ConfigError, match="INGEST"):
        Settings.from_env({"INGEST": "push"})
    with pytest.raises(ConfigError, match="has no stream"):
        Settings.from_env({"EXCHANGE_STREAMS": "kraken=wss://x"})
    with pytest.raises(ConfigError, match="not a ws"):
        Settings.from_env({"EXCHANGE_STREAMS": "okx=https://x"})
