"""What every venue personality shares: rate limits and faults around the venue's own shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from aiohttp import web

from mockex.answers import apply_faults, hostile_answer
from mockex.exchange import Exchange
from mockex.faults import ANSWER_KINDS
from mockex.symbols import SymbolList, split_symbol

if TYPE_CHECKING:
    from mockex.streams import StreamSocket

__all__ = ["Answer", "Personality", "Quote", "decimal", "turnover"]

Quote = dict[str, Any]  # {"symbol", "price", "volume", "timestamp"} as mockex's market makes them
Answer = tuple[int, object]  # (HTTP status, JSON body)


def decimal(value: object) -> object:
    """A number as the venues send them, a decimal string; a spoiled value as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if value != value:
        return "NaN"
    return f"{value:.12g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.12f}".rstrip("0")


def turnover(quote: Quote) -> object:
    """A quote's 24 h volume in the quote currency (price times base volume), as a decimal string;
    "0" when the garbage faults spoiled either number."""
    price, volume = quote["price"], quote["volume"]
    if isinstance(price, float) and isinstance(volume, float):
        return decimal(price * volume)
    return "0"


class Personality:
    """One venue's vocabulary over an Exchange's market and faults; subclasses give the shapes."""

    name: ClassVar[str]
    # The venue's public ticker stream (mockex.streams), where it has one.
    stream_path: ClassVar[str | None] = None
    # Whether a connection gets every instrument without subscribing (Binance's !miniTicker@arr).
    all_market_stream: ClassVar[bool] = False
    # Seconds between the server's own pings (a client must pong), where the venue pings.
    stream_heartbeat: ClassVar[float | None] = None

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.set_listing(exchange.listed or exchange.symbols)

    def set_listing(self, listed: SymbolList) -> None:
        """List exactly ``listed`` from now on."""
        self.natives = {self.native(s): s for s in listed.ordered}

    def native(self, symbol: str) -> str:
        """The venue's name for one of our symbols."""
        base, quote = split_symbol(symbol)
        return f"{base}{quote}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def on_stream_text(self, socket: StreamSocket, text: str) -> list[str]:
        """The venue's replies to a client's text frame (subscriptions, pings)."""
        return []

    def stream_frames(self, natives: list[str]) -> list[str]:
        """One push of the tickers of ``natives`` as the venue frames it."""
        return []

    def delisted(self) -> str | None:
        """One of our symbols the venue shows as not trading (real listings hold some)."""
        listed = set(self.natives.values())
        return next((s for s in self.exchange.symbols.ordered if s not in listed), None)

    def venue_error(self) -> Answer:
        """What the venue answers when it is itself in trouble (fault mode ``venue_error``)."""
        raise NotImplementedError

    def rate_limited(self) -> Answer:
        """The venue's "too many requests" answer (fault mode ``rate_limited``)."""
        raise NotImplementedError

    def quotes(self, natives: list[str]) -> list[tuple[str, Quote]]:
        """(native, quote) for each listed name asked for, spoiled as the faults say."""
        return [(n, self._spoil(self.exchange.quote(self.natives[n]))) for n in natives if n in self.natives]

    def _spoil(self, quote: Quote) -> Quote:
        faults = self.exchange.faults
        if faults.mode != "garbage":
            return quote
        kind = self.exchange.garbage_kind()
        bad = dict(quote)
        if kind == "nan_price":
            bad["price"] = float("nan")
        elif kind == "negative_price":
            bad["price"] = -quote["price"]
        elif kind == "zero_price":
            bad["price"] = 0.0
        elif kind == "negative_volume":
            bad["volume"] = -1.0
        elif kind == "missing_fields":
            bad["price"] = None
        elif kind == "string_price":
            bad["price"] = "lots"
        elif kind == "string_volume":
            bad["volume"] = "lots"
        return bad

    async def answer(
        self, request: web.Request, make: Callable[[], Answer], *, weight: int = 1
    ) -> web.StreamResponse:
        """One venue request: the rate-limit and fault modes first, then ``make()``'s answer."""
        exchange = self.exchange
        exchange.venue_requests += 1
        used = exchange.weight_used(weight)
        faults = exchange.faults
        if faults.mode == "rate_limited":
            exchange.rate_limited_answers += 1
            return self.limited_answer()
        failure = await apply_faults(exchange)
        if failure is not None:
            return failure
        status, body = self.venue_error() if faults.mode == "venue_error" else make()
        kind = faults.garbage_kind if faults.mode == "garbage" else None
        if kind == "not_json":
            return web.Response(body=b"<html>502 upstream hiccup</html>", content_type="application/json")
        if kind in ANSWER_KINDS:
            assert kind is not None
            return await hostile_answer(request, kind, orjson.dumps(body))
        response = self.respond(status, body)
        self.decorate(response, used)
        return response

    def limited_answer(self) -> web.Response:
        status, body = self.rate_limited()
        response = self.respond(status, body)
        if self.exchange.faults.retry_after is not None:
            response.headers["Retry-After"] = str(self.exchange.faults.retry_after)
        return response

    def decorate(self, response: web.Response, weight_used: int) -> None:
        """Venue-specific headers on a normal answer (Binance reports the weight used)."""

    @staticmethod
    def respond(status: int, body: object) -> web.Response:
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, content_type="text/html")
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    def now_ms(self) -> int:
        return int(self.exchange.clock() * 1000)
