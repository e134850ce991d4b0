"""Bybit's public market data (API v5): ``retCode`` envelopes, the time on the envelope, 403 bans."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, Quote, decimal

__all__ = ["Bybit"]


class Bybit(Personality):
    name = "bybit"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v5/market/instruments-info", self.instruments),
            web.get("/v5/market/tickers", self.tickers),
        ]

    def _envelope(self, result: dict[str, Any], code: int = 0, msg: str = "OK") -> dict[str, Any]:
        return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": self.now_ms()}

    async def instruments(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request, lambda: self._instruments(request.query.get("category")))

    def _instruments(self, category: str | None) -> Answer:
        if category != "spot":
            return 200, self._envelope({}, 10001, "params error: category")
        items = []
        for native, symbol in self.natives.items():
            base, quote = split_symbol(symbol)
            items.append({"symbol": native, "baseCoin": base, "quoteCoin": quote, "status": "Trading"})
        return 200, self._envelope({"category": "spot", "list": items})

    async def tickers(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(
            request, lambda: self._tickers(request.query.get("category"), request.query.get("symbol"))
        )

    def _tickers(self, category: str | None, native: str | None) -> Answer:
        if category != "spot":
            return 200, self._envelope({}, 10001, "params error: category")
        if native is not None and native not in self.natives:
            return 200, self._envelope({}, 10001, "Not supported symbols")
        natives = [native] if native is not None else list(self.natives)
        return 200, self._envelope(
            {"category": "spot", "list": [self._item(n, q) for n, q in self.quotes(natives)]}
        )

    @staticmethod
    def _item(native: str, quote: Quote) -> dict[str, Any]:
        price, volume = quote["price"], quote["volume"]
        return {
            "symbol": native,
            "bid1Price": decimal(price),
            "bid1Size": "1",
            "ask1Price": decimal(price),
            "ask1Size": "1",
            "lastPrice": decimal(price),
            "prevPrice24h": decimal(price),
            "price24hPcnt": "0",
            "highPrice24h": decimal(price),
            "lowPrice24h": decimal(price),
            "turnover24h": decimal(price * volume)
            if isinstance(price, float) and isinstance(volume, float)
            else "0",
            "volume24h": decimal(volume),
            "usdIndexPrice": "",
        }

    def rate_limited(self) -> Answer:
        # Past the per-IP limit Bybit answers 403 with a plain page, no envelope.
        return 403, b"<html><body>403 Forbidden: access too frequent</body></html>"

    def venue_error(self) -> Answer:
        return 200, self._envelope({}, 10016, "Internal server error.")
