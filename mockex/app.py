"""The simulated exchange's HTTP app: tickers, bulk tickers, fault and stats controls."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from aggserver.symbols import SymbolSet
from mockex.faults import ANSWER_KINDS, DRIP_SECONDS, GARBAGE_KINDS, HUGE_BODY_BYTES, Faults, FaultsError
from mockex.market import Market

__all__ = ["MAX_BULK_SYMBOLS", "Exchange", "create_app"]

MAX_BULK_SYMBOLS = 1_000


@dataclass(kw_only=True)
class Exchange:
    """One exchange's mutable state: its faults, pinned quotes and traffic counts."""

    name: str
    symbols: SymbolSet
    market: Market
    clock: Callable[[], float] = time.time
    faults: Faults = field(default_factory=Faults)
    pinned: dict[str, dict[str, float]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)
    _garbage_cycle: itertools.cycle[str] = field(default_factory=lambda: itertools.cycle(GARBAGE_KINDS))

    def quote(self, symbol: str) -> dict[str, Any]:
        now = self.clock()
        pin = self.pinned.get(symbol)
        if pin is not None:
            price = pin["price"]
            volume = pin.get("volume", 1.0)
            timestamp = int(pin.get("timestamp", now))
        else:
            price, volume = self.market.quote(self.name, symbol, now)
            timestamp = int(now)
        if self.faults.mode == "outlier":
            price *= self.faults.price_factor
        return {"symbol": symbol, "price": price, "volume": volume, "timestamp": timestamp}

    def garbage_kind(self) -> str:
        return self.faults.garbage_kind or next(self._garbage_cycle)

    def garbage(self, symbol: str, kind: str) -> bytes:
        good = self.quote(symbol)
        if kind == "not_json":
            return b"<html>502 upstream hiccup</html>"
        if kind == "not_object":
            return orjson.dumps([good])
        bad: dict[str, Any] = dict(good)
        if kind == "wrong_symbol":
            bad["symbol"] = "notthis" + symbol
        elif kind == "string_price":
            bad["price"] = f"{good['price']}"
        elif kind == "nan_price":
            return orjson.dumps(bad).replace(orjson.dumps(good["price"]), b"NaN", 1)
        elif kind == "negative_price":
            bad["price"] = -good["price"]
        elif kind == "zero_price":
            bad["price"] = 0
        elif kind == "negative_volume":
            bad["volume"] = -1.0
        elif kind == "missing_fields":
            del bad["price"], bad["volume"]
        elif kind == "infinity_price":
            return orjson.dumps(bad).replace(orjson.dumps(good["price"]), b"Infinity", 1)
        elif kind == "string_volume":
            bad["volume"] = "lots"
        return orjson.dumps(bad)


EXCHANGE = web.AppKey("exchange", Exchange)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _apply_faults(exchange: Exchange) -> web.Response | None:
    """Delay per the faults; the failure response to send instead of a quote, if any."""
    faults = exchange.faults
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if faults.mode == "down":
        return _json({"msg": f"{exchange.name} is down"}, 503)
    if faults.error_rate and exchange.rng.random() < faults.error_rate:
        return _json({"msg": f"{exchange.name} internal error"}, 500)
    return None


async def ticker(request: web.Request) -> web.StreamResponse:
    exchange = request.app[EXCHANGE]
    symbol = request.match_info["symbol"].lower()
    exchange.served[symbol] += 1
    if symbol not in exchange.symbols:
        return _json({"msg": f"unknown symbol {symbol!r}"}, 404)
    failure = await _apply_faults(exchange)
    if failure is not None:
        return failure
    if exchange.faults.mode == "garbage":
        kind = exchange.garbage_kind()
        if kind in ANSWER_KINDS:
            return await _hostile_answer(request, kind, orjson.dumps(exchange.quote(symbol)))
        return web.Response(body=exchange.garbage(symbol, kind), content_type="application/json")
    return _json(exchange.quote(symbol))


async def _hostile_answer(request: web.Request, kind: str, good: bytes) -> web.StreamResponse:
    """A whole answer that is wrong in itself: far too big, far too slow, or not declared JSON."""
    if kind == "huge_body":
        return web.Response(
            body=good[:-1] + b',"padding":"' + b"x" * HUGE_BODY_BYTES + b'"}', content_type="application/json"
        )
    if kind == "wrong_content_type":
        return web.Response(body=good, content_type="text/html")
    drip = web.StreamResponse(headers={"Content-Type": "application/json"})
    drip.content_length = len(good)
    await drip.prepare(request)
    for index in range(len(good)):
        await drip.write(good[index : index + 1])
        await asyncio.sleep(DRIP_SECONDS)
    await drip.write_eof()
    return drip


async def tickers(request: web.Request) -> web.StreamResponse:
    exchange = request.app[EXCHANGE]
    wanted = [s.strip().lower() for s in request.query.get("symbols", "").split(",") if s.strip()]
    if not wanted or len(wanted) > MAX_BULK_SYMBOLS:
        return _json({"msg": f"symbols must list 1 to {MAX_BULK_SYMBOLS} symbols"}, 400)
    known = [s for s in dict.fromkeys(wanted) if s in exchange.symbols]
    exchange.served.update(known)
    failure = await _apply_faults(exchange)
    if failure is not None:
        return failure
    if exchange.faults.mode == "garbage":
        kind = exchange.garbage_kind()
        if kind in ANSWER_KINDS:
            return await _hostile_answer(request, kind, orjson.dumps([exchange.quote(s) for s in known]))
        parts = b",".join(exchange.garbage(s, kind) for s in known)
        return web.Response(body=b"[" + parts + b"]", content_type="application/json")
    return _json([exchange.quote(s) for s in known])


async def get_faults(request: web.Request) -> web.Response:
    return _json(request.app[EXCHANGE].faults.as_json())


async def set_faults(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    try:
        exchange.faults = Faults.from_json(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, FaultsError) as exc:
        return _json({"msg": f"bad fault setting: {exc}"}, 400)
    return _json(exchange.faults.as_json())


async def get_stats(request: web.Request) -> web.Response:
    served = request.app[EXCHANGE].served
    return _json({"requests": served.total(), "by_symbol": dict(served)})


async def reset_stats(request: web.Request) -> web.Response:
    request.app[EXCHANGE].served.clear()
    return _json({"requests": 0, "by_symbol": {}})


async def pin_quotes(request: web.Request) -> web.Response:
    """Fix the quotes of some symbols (for hand-checked tests): {"btcusdt": {"price": 1, ...}}."""
    exchange = request.app[EXCHANGE]
    try:
        body = orjson.loads(await request.read())
        pins = {
            symbol.lower(): {k: float(v) for k, v in pin.items() if k in ("price", "volume", "timestamp")}
            for symbol, pin in body.items()
        }
        if not all("price" in pin for pin in pins.values()):
            raise ValueError("every pinned quote needs a price")
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        return _json({"msg": f"bad pinned quotes: {exc}"}, 400)
    exchange.pinned.update(pins)
    return _json(exchange.pinned)


async def clear_pins(request: web.Request) -> web.Response:
    request.app[EXCHANGE].pinned.clear()
    return _json({})


def create_app(
    *,
    name: str,
    symbols: SymbolSet,
    seed: int = 0,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """One simulated exchange called ``name``; the same seed gives every exchange the same market."""
    app = web.Application()
    app[EXCHANGE] = Exchange(
        name=name,
        symbols=symbols,
        market=Market(seed),
        clock=clock,
        rng=random.Random(f"{seed}:{name}"),
    )
    app.router.add_get("/mock/ticker/{symbol}", ticker)
    app.router.add_get("/mock/tickers", tickers)
    app.router.add_get("/mock/admin/faults", get_faults)
    app.router.add_post("/mock/admin/faults", set_faults)
    app.router.add_get("/mock/admin/stats", get_stats)
    app.router.add_delete("/mock/admin/stats", reset_stats)
    app.router.add_post("/mock/admin/quotes", pin_quotes)
    app.router.add_delete("/mock/admin/quotes", clear_pins)
    return app
