"""Bybit's public market data (API v5): ``retCode`` envelopes, the time on the envelope, 403 bans."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from mockex.symbols import split_symbol
from mockex.venues.base import Answer, Personality, Quote, decimal, turnover

if TYPE_CHECKING:
    from mockex.streams import StreamSocket

__all__ = ["Bybit"]

# The spot stream's limit on arguments in one subscribe frame.
MAX_STREAM_ARGS = 10


class Bybit(Personality):
    name = "bybit"
    stream_path = "/v5/public/spot"

    def __init__(self, exchange: Any) -> None:
        super().__init__(exchange)
        self._sequence = itertools.count(1)

    def on_stream_text(self, socket: StreamSocket, text: str) -> list[str]:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        op = request.get("op") if isinstance(request, dict) else None
        if op == "ping":
            return [self._stream_reply(socket, "ping", True, "pong")]
        if op != "subscribe" or not isinstance(request, dict) or not isinstance(request.get("args"), list):
            return [self._stream_reply(socket, str(op), False, "error:invalid op")]
        args = request["args"]
        if len(args) > MAX_STREAM_ARGS:
            return [self._stream_reply(socket, "subscribe", False, f"args size >{MAX_STREAM_ARGS}")]
        natives = [
            a.removeprefix("tickers.") for a in args if isinstance(a, str) and a.startswith("tickers.")
        ]
        unknown = [n for n in natives if n not in self.natives]
        if unknown or len(natives) != len(args):
            return [self._stream_reply(socket, "subscribe", False, f"error:handler not found,topic:{args}")]
        socket.natives.update(dict.fromkeys(natives))
        return [self._stream_reply(socket, "subscribe", True, "")]

    @staticmethod
    def _stream_reply(socket: StreamSocket, op: str, success: bool, message: str) -> str:
        return orjson.dumps(
            {"success": success, "ret_msg": message, "conn_id": socket.conn_id, "op": op}
        ).decode()

    def stream_frames(self, natives: list[str]) -> list[str]:
        now = self.now_ms()
        return [
            orjson.dumps(
                {
                    "topic": f"tickers.{n}",
                    "ts": now,
                    "type": "snapshot",
                    "cs": next(self._sequence),
                    "data": self._item(n, q),
                }
            ).decode()
            for n, q in self.quotes(natives)
        ]

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
            "turnover24h": turnover(quote),
            "volume24h": decimal(volume),
            "usdIndexPrice": "",
        }

    def rate_limited(self) -> Answer:
        # Past the per-IP limit Bybit answers 403 with a plain page, no envelope.
        return 403, b"<html><body>403 Forbidden: access too frequent</body></html>"

    def venue_error(self) -> Answer:
        return 200, self._envelope({}, 10016, "Internal server error.")
