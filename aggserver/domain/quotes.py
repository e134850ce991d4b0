"""Quotes: one exchange's view of one asset, and the one rule of what makes a venue's ticker a
valid quote. Pure: the venue adapters parse their formats into tickers (or reasons), and every
ticker, polled or streamed, becomes a quote here or says why it cannot be one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aggserver.domain.reasons import QuoteRejected, ReasonCode

if TYPE_CHECKING:
    # A venue adapter's ticker; only its fields are read here.
    from aggserver.venues.base import Ticker

__all__ = ["Quote", "to_quote"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """One exchange's view of one asset."""

    source: str
    symbol: str
    price: float
    volume: float
    timestamp: int
    # False when the venue sent no time and ``timestamp`` is when its answer arrived.
    venue_time: bool = True
    # The same moment in milliseconds where the venue says it that precisely (streams do).
    timestamp_ms: int | None = None

    @property
    def moment_ms(self) -> int:
        return self.timestamp_ms if self.timestamp_ms is not None else self.timestamp * 1000


def to_quote(
    ticker: Ticker | QuoteRejected,
    *,
    source: str,
    symbol: str,
    received_at: float,
    millisecond_times: bool = True,
) -> Quote | QuoteRejected:
    """``source``'s quote of ``symbol`` from its ticker, or why it cannot be one: a price that is
    not positive, a negative volume, a time before 1970. A ticker without a time of its own is
    timed ``received_at`` (our clock, unix seconds); ``millisecond_times`` says whether the
    venue's times are precise to the millisecond."""
    if isinstance(ticker, QuoteRejected):
        return ticker.prefixed("invalid quote: ")
    if ticker.price <= 0:
        return _invalid("price is not positive")
    if ticker.volume < 0:
        return _invalid("volume is negative")
    venue_time = ticker.timestamp_ms is not None
    timestamp = int(ticker.timestamp_ms / 1000) if ticker.timestamp_ms is not None else int(received_at)
    if timestamp <= 0:
        return _invalid("timestamp is not positive")
    if ticker.timestamp_ms is None:
        milliseconds: int | None = int(received_at * 1000)
    else:
        milliseconds = int(ticker.timestamp_ms) if millisecond_times else None
    return Quote(
        source=source,
        symbol=symbol,
        price=ticker.price,
        volume=ticker.volume,
        timestamp=timestamp,
        venue_time=venue_time,
        timestamp_ms=milliseconds,
    )


def _invalid(why: str) -> QuoteRejected:
    return QuoteRejected(ReasonCode.BAD_BODY, f"invalid quote: {why}")
