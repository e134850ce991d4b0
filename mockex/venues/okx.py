"""OKX's public market data (API v5): every answer an envelope with a string ``code``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, Quote, decimal, turnover

if TYPE_CHECKING:
    from mockex.streams import StreamSocket

__all__ = ["Okx"]


def _envelope(data: list[Any], code: str = "0", msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


class Okx(Personality):
    name = "okx"
    stream_path = "/ws/v5/public"

    def on_stream_text(self, socket: StreamSocket, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [self._stream_error(socket, "60012", f"Invalid request: {text[:40]}")]
        args = request.get("args") if isinstance(request, dict) else None
        if not isinstance(args, list) or request.get("op") != "subscribe":
            return [self._stream_error(socket, "60012", "Invalid request")]
        replies = []
        for arg in args:
            native = arg.get("instId") if isinstance(arg, dict) else None
            if not isinstance(arg, dict) or arg.get("channel") != "tickers" or native not in self.natives:
                replies.append(
                    self._stream_error(
                        socket, "60018", f"Wrong URL or channel:tickers,instId:{native} doesn't exist."
                    )
                )
                continue
            socket.natives[native] = None
            replies.append(
                orjson.dumps({"event": "subscribe", "arg": arg, "connId": socket.conn_id}).decode()
            )
        return replies

    @staticmethod
    def _stream_error(socket: StreamSocket, code: str, msg: str) -> str:
        return orjson.dumps({"event": "error", "code": code, "msg": msg, "connId": socket.conn_id}).decode()

    def stream_frames(self, natives: list[str]) -> list[str]:
        return [
            orjson.dumps({"arg": {"channel": "tickers", "instId": n}, "data": [self._item(n, q)]}).decode()
            for n, q in self.quotes(natives)
        ]

    def native(self, symbol: str) -> str:
        base, quote = split_symbol(symbol)
        return f"{base}-{quote}"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v5/public/instruments", self.instruments),
            web.get("/api/v5/market/tickers", self.tickers),
            web.get("/api/v5/market/ticker", self.ticker),
        ]

    async def instruments(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request, lambda: self._instruments(request.query.get("instType")))

    def _instruments(self, kind: str | None) -> Answer:
        if kind != "SPOT":
            return 200, _envelope([], "51000", "Parameter instType error")
        entries = [(n, s, "live") for n, s in self.natives.items()]
        delisted = self.delisted()
        if delisted is not None:
            entries.append((self.native(delisted), delisted, "suspend"))
        data = []
        for native, symbol, state in entries:
            base, quote = split_symbol(symbol)
            data.append(
                {"instType": "SPOT", "instId": native, "baseCcy": base, "quoteCcy": quote, "state": state}
            )
        return 200, _envelope(data)

    async def tickers(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("instType") != "SPOT":
            return await self.answer(
                request, lambda: (200, _envelope([], "51000", "Parameter instType error"))
            )
        return await self.answer(request, lambda: (200, _envelope(self._tickers(list(self.natives)))))

    async def ticker(self, request: web.Request) -> web.StreamResponse:
        native = request.query.get("instId", "")
        return await self.answer(request, lambda: self._one(native))

    def _one(self, native: str) -> Answer:
        if native not in self.natives:
            return 200, _envelope([], "51001", "Instrument ID does not exist")
        return 200, _envelope(self._tickers([native]))

    def _tickers(self, natives: list[str]) -> list[dict[str, Any]]:
        return [self._item(n, q) for n, q in self.quotes(natives)]

    @staticmethod
    def _item(native: str, quote: Quote) -> dict[str, Any]:
        price, volume = quote["price"], quote["volume"]
        return {
            "instType": "SPOT",
            "instId": native,
            "last": decimal(price),
            "lastSz": "1",
            "askPx": decimal(price),
            "askSz": "1",
            "bidPx": decimal(price),
            "bidSz": "1",
            "open24h": decimal(price),
            "high24h": decimal(price),
            "low24h": decimal(price),
            "volCcy24h": turnover(quote),
            "vol24h": decimal(volume),
            "ts": str(int(quote["timestamp"]) * 1000),
            "sodUtc0": decimal(price),
            "sodUtc8": decimal(price),
        }

    def rate_limited(self) -> Answer:
        return 429, {"msg": "Too Many Requests", "code": "50011"}

    def venue_error(self) -> Answer:
        return 200, _envelope([], "50001", "Service temporarily unavailable. Please try again later.")
