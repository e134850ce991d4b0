"""Kraken's public market data: ``error`` lists on HTTP 200, its own asset codes, no ticker time."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, Quote, decimal

__all__ = ["Kraken"]

# How Kraken spells some assets: its own short codes, and the class-prefixed legacy codes.
SHORT_CODES = {"BTC": "XBT", "DOGE": "XDG"}
LEGACY_CODES = {
    "XBT": "XXBT",
    "ETH": "XETH",
    "XDG": "XXDG",
    "LTC": "XLTC",
    "XRP": "XXRP",
    "USD": "ZUSD",
    "EUR": "ZEUR",
}


class Kraken(Personality):
    name = "kraken"

    def native(self, symbol: str) -> str:
        # Pairs Kraken listed early join legacy codes (XXBTZUSD); later ones join short codes.
        base, quote = (SHORT_CODES.get(code, code) for code in split_symbol(symbol))
        if base in LEGACY_CODES and quote in LEGACY_CODES:
            return LEGACY_CODES[base] + LEGACY_CODES[quote]
        return base + quote

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/0/public/AssetPairs", self.asset_pairs),
            web.get("/0/public/Ticker", self.ticker),
        ]

    async def asset_pairs(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request, self._asset_pairs)

    def _asset_pairs(self) -> Answer:
        entries = [(n, s, "online") for n, s in self.natives.items()]
        delisted = self.delisted()
        if delisted is not None:
            entries.append((self.native(delisted), delisted, "cancel_only"))
        result = {}
        for native, symbol, status in entries:
            base, quote = (SHORT_CODES.get(code, code) for code in split_symbol(symbol))
            result[native] = {
                "altname": base + quote,
                "wsname": f"{base}/{quote}",
                "aclass_base": "currency",
                "base": LEGACY_CODES.get(base, base),
                "aclass_quote": "currency",
                "quote": LEGACY_CODES.get(quote, quote),
                "lot": "unit",
                "status": status,
            }
        return 200, {"error": [], "result": result}

    async def ticker(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("pair")
        natives = list(self.natives) if raw is None else [p for p in raw.split(",") if p]
        return await self.answer(request, lambda: self._tickers(natives))

    def _tickers(self, natives: list[str]) -> Answer:
        if any(n not in self.natives for n in natives):
            return 200, {"error": ["EQuery:Unknown asset pair"]}
        return 200, {"error": [], "result": {n: self._item(q) for n, q in self.quotes(natives)}}

    @staticmethod
    def _item(quote: Quote) -> dict[str, Any]:
        price, volume = decimal(quote["price"]), decimal(quote["volume"])
        return {
            "a": [price, "1", "1.000"],
            "b": [price, "1", "1.000"],
            "c": [price, "0.01000000"],
            "v": [volume, volume],
            "p": [price, price],
            "t": [100, 1_000],
            "l": [price, price],
            "h": [price, price],
            "o": price,
        }

    def rate_limited(self) -> Answer:
        return 200, {"error": ["EAPI:Rate limit exceeded"]}

    def venue_error(self) -> Answer:
        return 200, {"error": ["EService:Unavailable"]}
