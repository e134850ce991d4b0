"""What makes a quote valid (``aggserver/domain/quotes.py``): every ticker, whatever venue format it
came in, becomes a quote there or says why not; mockex's format is the example here."""

from __future__ import annotations

import math

import pytest

from aggserver.domain.quotes import Quote, to_quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.venues.base import Ticker
from aggserver.venues.mockex import Mockex

GOOD = {"symbol": "btcusdt", "price": 100.5, "volume": 12.0, "timestamp": 1_700_000_000}


def judged(payload: object) -> Quote | QuoteRejected:
    """A mockex answer parsed by its adapter, then judged as every quote is."""
    ticker = Mockex("http://127.0.0.1:8081/mock/ticker").parse_ticker(payload, "btcusdt")
    return to_quote(
        ticker, source="ex1", symbol="btcusdt", received_at=1_700_000_005, millisecond_times=False
    )


def test_a_good_answer_is_a_quote_whatever_the_case_of_its_symbol() -> None:
    assert judged({**GOOD, "symbol": "BTCUSDT"}) == Quote(
        source="ex1", symbol="btcusdt", price=100.5, volume=12.0, timestamp=1_700_000_000
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([GOOD], "not a JSON object"),
        ({**GOOD, "symbol": "ethusdt"}, "another symbol"),
        ({**GOOD, "symbol": None}, "another symbol"),
        ({**GOOD, "price": "100.5"}, "price is not a number"),
        ({**GOOD, "price": True}, "price is not a number"),
        ({**GOOD, "price": math.nan}, "price is not finite"),
        ({**GOOD, "price": math.inf}, "price is not finite"),
        ({**GOOD, "price": 0}, "price is not positive"),
        ({**GOOD, "price": -3.0}, "price is not positive"),
        ({**GOOD, "volume": -1.0}, "volume is negative"),
        ({**GOOD, "volume": math.inf}, "volume is not finite"),
        ({k: v for k, v in GOOD.items() if k != "volume"}, "volume is not a number"),
        ({**GOOD, "timestamp": "now"}, "timestamp is not a number"),
        ({**GOOD, "timestamp": -5}, "timestamp is not positive"),
    ],
)
def test_a_bad_answer_is_a_bad_body_saying_why(payload: object, reason: str) -> None:
    outcome = judged(payload)
    assert isinstance(outcome, QuoteRejected)
    assert outcome.code is ReasonCode.BAD_BODY
    assert outcome.detail.startswith("invalid quote: ")
    assert reason in outcome.detail


def test_a_zero_volume_is_a_valid_quote() -> None:
    # A venue with no trades in 24 h still has a price (RELIABILITY.md calls it valid).
    outcome = judged({**GOOD, "volume": 0})
    assert isinstance(outcome, Quote)
    assert outcome.volume == 0


def test_a_ticker_without_a_time_is_timed_when_it_arrived() -> None:
    ticker = Ticker(native="XBTUSD", price=50_000.0, volume=3.0, timestamp_ms=None)
    outcome = to_quote(ticker, source="kraken", symbol="btcusd", received_at=1_700_000_001.25)
    assert outcome == Quote(
        source="kraken",
        symbol="btcusd",
        price=50_000.0,
        volume=3.0,
        timestamp=1_700_000_001,
        venue_time=False,
        timestamp_ms=1_700_000_001_250,
    )


@pytest.mark.parametrize(("precise", "expected"), [(True, 1_700_000_000_123), (False, None)])
def test_milliseconds_are_kept_only_where_the_venue_is_that_precise(
    precise: bool, expected: int | None
) -> None:
    ticker = Ticker(native="BTCUSDT", price=1.0, volume=1.0, timestamp_ms=1_700_000_000_123)
    outcome = to_quote(ticker, source="x", symbol="btcusdt", received_at=0, millisecond_times=precise)
    assert isinstance(outcome, Quote)
    assert (outcome.timestamp, outcome.timestamp_ms) == (1_700_000_000, expected)
