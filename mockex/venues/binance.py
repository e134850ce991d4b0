"""Binance spot's public market data: exchangeInfo, ticker/24hr, request weight, 429 then 418."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, Quote, decimal, turnover

__all__ = ["Binance"]

WEIGHT_LIMIT = 6_000
# Requests a client may send into a 429 before Binance bans its IP with a 418.
IGNORED_429_BEFORE_BAN = 2
BAN_SECONDS = 120


class Binance(Personality):
    name = "binance"
    stream_path = "/ws/!miniTicker@arr"
    all_market_stream = True
    # Binance pings every few minutes; the mock sooner, so that tests see it answered.
    stream_heartbeat = 20.0

    def stream_frames(self, natives: list[str]) -> list[str]:
        event_time = self.now_ms()
        events = []
        for native, quote in self.quotes(natives):
            price, volume = quote["price"], quote["volume"]
            events.append(
                {
                    "e": "24hrMiniTicker",
                    "E": event_time,
                    "s": native,
                    "c": decimal(price),
                    "o": decimal(price),
                    "h": decimal(price),
                    "l": decimal(price),
                    "v": decimal(volume),
                    "q": turnover(quote),
                }
            )
        return [orjson.dumps(events).decode()]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/api/v3/ticker/24hr", self.ticker_24hr),
        ]

    async def exchange_info(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request, self._exchange_info, weight=20)

    def _exchange_info(self) -> Answer:
        symbols: list[dict[str, Any]] = []
        for native, symbol in self.natives.items():
            base, quote = split_symbol(symbol)
            symbols.append({"symbol": native, "status": "TRADING", "baseAsset": base, "quoteAsset": quote})
        delisted = self.delisted()
        if delisted is not None:
            base, quote = split_symbol(delisted)
            symbols.append(
                {"symbol": base + quote, "status": "BREAK", "baseAsset": base, "quoteAsset": quote}
            )
        for entry in symbols:
            entry.update({"isSpotTradingAllowed": True, "permissions": [], "filters": []})
        return 200, {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": WEIGHT_LIMIT,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61_000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    async def ticker_24hr(self, request: web.Request) -> web.StreamResponse:
        one = request.query.get("symbol")
        many = request.query.get("symbols")
        if one is not None:
            return await self.answer(request, lambda: self._one(one), weight=2)
        if many is not None:
            try:
                natives = [str(n) for n in orjson.loads(many)]
            except (orjson.JSONDecodeError, TypeError):
                return self.respond(
                    400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'."}
                )
            weight = 2 if len(natives) <= 20 else 40 if len(natives) <= 100 else 80
            return await self.answer(request, lambda: self._many(natives), weight=weight)
        return await self.answer(request, lambda: self._many(list(self.natives)), weight=80)

    def _one(self, native: str) -> Answer:
        found = self.quotes([native])
        if not found:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        return 200, self._ticker(*found[0])

    def _many(self, natives: list[str]) -> Answer:
        if any(n not in self.natives for n in natives):
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        return 200, [self._ticker(n, q) for n, q in self.quotes(natives)]

    def _ticker(self, native: str, quote: Quote) -> dict[str, Any]:
        price, volume = quote["price"], quote["volume"]
        close_ms = int(quote["timestamp"]) * 1000
        return {
            "symbol": native,
            "priceChange": "0.00000000",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": decimal(price),
            "prevClosePrice": decimal(price),
            "lastPrice": decimal(price),
            "lastQty": "1.00000000",
            "bidPrice": decimal(price),
            "bidQty": "1.00000000",
            "askPrice": decimal(price),
            "askQty": "1.00000000",
            "openPrice": decimal(price),
            "highPrice": decimal(price),
            "lowPrice": decimal(price),
            "volume": decimal(volume),
            "quoteVolume": turnover(quote),
            "openTime": close_ms - 86_400_000,
            "closeTime": close_ms,
            "firstId": 1,
            "lastId": 1_000,
            "count": 1_000,
        }

    def rate_limited(self) -> Answer:
        if self.exchange.rate_limited_answers > IGNORED_429_BEFORE_BAN + 1:
            return 418, {"code": -1003, "msg": "Way too many requests; IP banned for ignoring 429s."}
        return 429, {
            "code": -1003,
            "msg": f"Too many requests; current limit of IP is {WEIGHT_LIMIT} per minute.",
        }

    def limited_answer(self) -> web.Response:
        response = super().limited_answer()
        if response.status == 418:
            response.headers["Retry-After"] = str(BAN_SECONDS)
        return response

    def venue_error(self) -> Answer:
        return 500, {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }

    def decorate(self, response: web.Response, weight_used: int) -> None:
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(weight_used)
