"""Coinbase Exchange's public market data: products, one ticker per product, ``message`` errors."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, decimal

__all__ = ["Coinbase"]


class Coinbase(Personality):
    name = "coinbase"

    def native(self, symbol: str) -> str:
        base, quote = split_symbol(symbol)
        return f"{base}-{quote}"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/products", self.products),
            web.get("/products/{product}/ticker", self.ticker),
        ]

    async def products(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request, self._products)

    def _products(self) -> Answer:
        entries = [(n, s, "online") for n, s in self.natives.items()]
        delisted = self.delisted()
        if delisted is not None:
            entries.append((self.native(delisted), delisted, "delisted"))
        products = []
        for native, symbol, status in entries:
            base, quote = split_symbol(symbol)
            products.append(
                {
                    "id": native,
                    "base_currency": base,
                    "quote_currency": quote,
                    "display_name": f"{base}/{quote}",
                    "status": status,
                    "status_message": "",
                    "trading_disabled": status != "online",
                }
            )
        return 200, products

    async def ticker(self, request: web.Request) -> web.StreamResponse:
        native = request.match_info["product"]
        return await self.answer(request, lambda: self._ticker(native))

    def _ticker(self, native: str) -> Answer:
        found = self.quotes([native])
        if not found:
            return 404, {"message": "NotFound"}
        quote = found[0][1]
        price = quote["price"]
        moment = datetime.fromtimestamp(int(quote["timestamp"]), tz=UTC)
        return 200, {
            "ask": decimal(price),
            "bid": decimal(price),
            "volume": decimal(quote["volume"]),
            "trade_id": 1_000,
            "price": decimal(price),
            "size": "0.01",
            "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }

    def rate_limited(self) -> Answer:
        return 429, {"message": "Public rate limit exceeded"}

    def venue_error(self) -> Answer:
        return 503, {"message": "Service Unavailable"}
