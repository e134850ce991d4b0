"""What every venue adapter provides: requests to send, and parsers for what comes back.

An adapter is pure: it builds request descriptions and turns decoded JSON into tickers or
errors. Sending, rate limits and breakers live in ``aggserver.exchanges``; the adapters hold
only each venue's own vocabulary (paths, field names, envelopes, error codes, published limits).

VenueError           the answer is not a usable quote (code ``bad_body``)
 ├── HttpError       an HTTP error status (``http_error``)
 ├── EnvelopeError   the venue answered, but its envelope carries an error code (``venue_error``)
 └── RateLimited     the venue says slow down: HTTP 429/418/403 or an envelope code (``rate_limited``)

Each carries its reason code from where it is raised (``rejection``), never from its wording.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from aggserver.domain.reasons import QuoteRejected, ReasonCode

__all__ = [
    "Bulk",
    "EnvelopeError",
    "HttpError",
    "Instrument",
    "RateLimited",
    "RatePolicy",
    "Ticker",
    "Venue",
    "VenueError",
    "VenueRequest",
    "listed_instruments",
    "number",
    "our_symbol",
    "read_tickers",
    "retry_after_seconds",
]


class Bulk(Enum):
    """How a venue answers for many symbols."""

    ALL = "all"  # one request answers every instrument it lists
    LIST = "list"  # one request answers a list of named instruments
    NONE = "none"  # one request per instrument


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueRequest:
    """A GET to send: path below the base URL, query parameters, and its cost in the venue's
    rate-limit units (Binance counts request weight; the others count requests)."""

    path: str
    params: Mapping[str, str] | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """One tradable market as a venue lists it, with base and quote in common codes (BTC, USDT)."""

    native: str
    base: str
    quote: str

    @property
    def symbol(self) -> str:
        """Our name for it: lowercase base then quote (``btcusdt``)."""
        return our_symbol(self.base, self.quote)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    """One instrument's last price and 24 h base volume; ``timestamp_ms`` None when the venue
    sends no time (the caller then uses the time the answer arrived)."""

    native: str
    price: float
    volume: float
    timestamp_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RatePolicy:
    """A venue's published per-IP budget: ``capacity`` units per ``window_seconds``."""

    capacity: float
    window_seconds: float


class VenueError(Exception):
    """The venue's answer is an error; the message is the reason shown in ``detail=sources``."""

    code: ClassVar[ReasonCode] = ReasonCode.BAD_BODY

    @property
    def rejection(self) -> QuoteRejected:
        """This failure as the reason a quote is missing."""
        return QuoteRejected(self.code, str(self))


class HttpError(VenueError):
    """An HTTP error status, with the venue's own words where its body has some."""

    code = ReasonCode.HTTP_ERROR

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(f"HTTP {status}" + (f": {message}" if message else ""))
        self.status = status


class EnvelopeError(VenueError):
    """An error code inside the venue's JSON envelope (often on HTTP 200)."""

    code = ReasonCode.VENUE_ERROR

    def __init__(self, reason: str) -> None:
        super().__init__(f"venue error: {reason}")


class RateLimited(VenueError):
    """The venue asks us to slow down; ``retry_after`` in seconds when it says how long."""

    code = ReasonCode.RATE_LIMITED

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


# A single-ticker answer about some other instrument.
NOT_NAMED = QuoteRejected(ReasonCode.BAD_BODY, "answer does not name the asset")


def our_symbol(base: str, quote: str) -> str:
    return f"{base}{quote}".lower()


def number(value: object, name: str) -> float:
    """A finite float from a venue's field, which may be a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise VenueError(f"{name} is not a number")
    if isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise VenueError(f"{name} is not a number: {value[:32]!r}") from None
    elif isinstance(value, int | float):
        result = float(value)
    else:
        raise VenueError(f"{name} is not a number")
    if not math.isfinite(result):
        raise VenueError(f"{name} is not finite")
    return result


def listed_instruments(
    items: Iterable[object],
    *,
    native: str,
    base: str,
    quote: str,
    tradable: Callable[[dict[str, object]], bool],
) -> list[Instrument]:
    """The tradable instruments among a listing's entries, by the names of their three fields."""
    instruments = []
    for item in items:
        if not isinstance(item, dict) or not tradable(item):
            continue
        name, base_code, quote_code = item.get(native), item.get(base), item.get(quote)
        if isinstance(name, str) and isinstance(base_code, str) and isinstance(quote_code, str):
            instruments.append(Instrument(native=name, base=base_code.upper(), quote=quote_code.upper()))
    return instruments


def read_tickers(
    items: Iterable[object],
    *,
    native: str,
    price: str,
    volume: str,
    timestamp_ms: Callable[[dict[str, object]], float | None],
) -> dict[str, Ticker | QuoteRejected]:
    """Tickers by native name from a list of ticker objects, by the names of their fields; a
    bad field spoils only its own ticker (its reason stands in its place)."""
    tickers: dict[str, Ticker | QuoteRejected] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(native), str):
            raise VenueError("the answer holds something that is not a ticker")
        name = str(item[native])
        try:
            tickers[name] = Ticker(
                native=name,
                price=number(item.get(price), price),
                volume=number(item.get(volume), volume),
                timestamp_ms=timestamp_ms(item),
            )
        except VenueError as exc:
            tickers[name] = exc.rejection
    return tickers


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds when it is a plain number (the venues send delta-seconds)."""
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class Venue:
    """The interface of one venue's adapter; subclasses fill in the venue's vocabulary."""

    name: ClassVar[str]
    base_url: ClassVar[str]
    bulk: ClassVar[Bulk]
    # For Bulk.LIST: most instruments one request may name.
    max_per_request: ClassVar[int] = 1
    rate: ClassVar[RatePolicy]
    # Whether it quotes every one of our symbols, so that no listing is loaded (mockex).
    lists_everything: ClassVar[bool] = False
    # Whether its times are precise to the millisecond (prices then carry last_updated_ms).
    millisecond_times: ClassVar[bool] = True

    def origin(self, base_url: str) -> str:
        """What request paths are appended to, from the configured base URL."""
        return base_url

    def listing_request(self) -> VenueRequest | None:
        """The request that lists the venue's instruments; None when it lists every symbol."""
        raise NotImplementedError

    def parse_listing(self, payload: object) -> list[Instrument]:
        """The tradable instruments in a listing answer (others are left out)."""
        raise NotImplementedError

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        """Bulk tickers: every instrument (None, Bulk.ALL) or the named ones (Bulk.LIST)."""
        raise NotImplementedError

    def ticker_request(self, native: str) -> VenueRequest:
        raise NotImplementedError

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        """A bulk answer's tickers by native name, or why one is unusable; VenueError for the
        whole answer."""
        raise NotImplementedError

    def parse_ticker(self, payload: object, native: str) -> Ticker | QuoteRejected:
        """The answer to ``ticker_request(native)``: its ticker, or why it is unusable."""
        return self.parse_tickers(payload).get(native, NOT_NAMED)

    def listing_rate(self, payload: object) -> RatePolicy | None:
        """A rate budget the listing answer announces (Binance's ``rateLimits``), if any."""
        return None

    def check_status(self, status: int, payload: object, headers: Mapping[str, str]) -> None:
        """Raise RateLimited or VenueError for an answer that is not a plain 200.

        The default: 429 (and 418) are rate limits, honouring ``Retry-After``; any other
        non-200 is an error named by its status and the venue's message where one is found.
        """
        if status in (418, 429):
            raise RateLimited(f"rate limited (HTTP {status})", retry_after=retry_after_seconds(headers))
        if status != 200:
            raise HttpError(status, self.error_message(payload))

    def error_message(self, payload: object) -> str | None:
        """The venue's own words in an error body, where its envelope has some."""
        return None

    def used_share(self, headers: Mapping[str, str], rate: RatePolicy) -> float | None:
        """How much of the budget the venue says this IP has used (0-1), where it tells."""
        return None
