"""The simulated exchange's HTTP app: tickers, bulk tickers, fault, listing, peg and stats controls."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from mockex import pricing
from mockex.answers import apply_faults, hostile_answer, json_response
from mockex.exchange import Exchange
from mockex.faults import ANSWER_KINDS, Faults, FaultsError
from mockex.listing import ListingError, parse_listing
from mockex.market import Market
from mockex.pegs import PegsError, parse_pegs
from mockex.streams import StreamHub
from mockex.symbols import SymbolList
from mockex.venues import PERSONALITIES
from mockex.venues.base import Personality

__all__ = ["EXCHANGE", "MAX_BULK_SYMBOLS", "Exchange", "create_app"]

MAX_BULK_SYMBOLS = 1_000


EXCHANGE = web.AppKey("exchange", Exchange)
PERSONALITY = web.AppKey("personality", Personality)


async def ticker(request: web.Request) -> web.StreamResponse:
    exchange = request.app[EXCHANGE]
    symbol = request.match_info["symbol"].lower()
    exchange.served[symbol] += 1
    if symbol not in exchange.symbols:
        return json_response({"msg": f"unknown symbol {symbol!r}"}, 404)
    failure = await apply_faults(exchange)
    if failure is not None:
        return failure
    if exchange.faults.mode == "garbage":
        kind = exchange.garbage_kind()
        if kind in ANSWER_KINDS:
            return await hostile_answer(request, kind, orjson.dumps(exchange.quote(symbol)))
        return web.Response(body=exchange.garbage(symbol, kind), content_type="application/json")
    return json_response(exchange.quote(symbol))


async def tickers(request: web.Request) -> web.StreamResponse:
    exchange = request.app[EXCHANGE]
    wanted = [s.strip().lower() for s in request.query.get("symbols", "").split(",") if s.strip()]
    if not wanted or len(wanted) > MAX_BULK_SYMBOLS:
        return json_response({"msg": f"symbols must list 1 to {MAX_BULK_SYMBOLS} symbols"}, 400)
    known = [s for s in dict.fromkeys(wanted) if s in exchange.symbols]
    exchange.served.update(known)
    failure = await apply_faults(exchange)
    if failure is not None:
        return failure
    if exchange.faults.mode == "garbage":
        kind = exchange.garbage_kind()
        if kind in ANSWER_KINDS:
            return await hostile_answer(request, kind, orjson.dumps([exchange.quote(s) for s in known]))
        parts = b",".join(exchange.garbage(s, kind) for s in known)
        return web.Response(body=b"[" + parts + b"]", content_type="application/json")
    return json_response([exchange.quote(s) for s in known])


@web.middleware
async def count_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts quote requests answered at once (admin calls aside)."""
    if request.path.startswith("/mock/admin/"):
        return await handler(request)
    exchange = request.app[EXCHANGE]
    exchange.in_flight += 1
    exchange.most_in_flight = max(exchange.most_in_flight, exchange.in_flight)
    try:
        return await handler(request)
    finally:
        exchange.in_flight -= 1


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[EXCHANGE].faults.as_json())


async def set_faults(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    try:
        exchange.set_faults(Faults.from_json(orjson.loads(await request.read())))
    except (orjson.JSONDecodeError, FaultsError) as exc:
        return json_response({"msg": f"bad fault setting: {exc}"}, 400)
    return json_response(exchange.faults.as_json())


def _listing(exchange: Exchange) -> dict[str, object]:
    listed = exchange.listed or exchange.symbols
    return {"listed": len(listed), "symbols": list(listed.ordered)}


async def get_listing(request: web.Request) -> web.Response:
    return json_response(_listing(request.app[EXCHANGE]))


async def set_listing(request: web.Request) -> web.Response:
    """``{"listed": N}`` or ``{"symbols": [...]}`` (mockex.listing): the venue lists those from
    now on (its listing answer, tickers and streams), as venues add and remove markets."""
    exchange = request.app[EXCHANGE]
    try:
        listed = parse_listing(orjson.loads(await request.read()), exchange.symbols)
    except (orjson.JSONDecodeError, ListingError) as exc:
        return json_response({"msg": f"bad listing: {exc}"}, 400)
    exchange.list_only(listed)
    request.app[PERSONALITY].set_listing(listed)
    return json_response(_listing(exchange))


async def get_pegs(request: web.Request) -> web.Response:
    return json_response(request.app[EXCHANGE].pegs)


async def set_pegs(request: web.Request) -> web.Response:
    """``{"usdt": 0.97}`` depegs USDT on this venue, ``{"usdt": null}`` restores it (mockex.pegs)."""
    exchange = request.app[EXCHANGE]
    try:
        changes = parse_pegs(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, PegsError) as exc:
        return json_response({"msg": f"bad pegs: {exc}"}, 400)
    for currency, value in changes.items():
        if value is None:
            exchange.pegs.pop(currency, None)
        else:
            exchange.pegs[currency] = value
    return json_response(exchange.pegs)


async def clear_pegs(request: web.Request) -> web.Response:
    request.app[EXCHANGE].pegs.clear()
    return json_response({})


async def get_stats(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    served = exchange.served
    return json_response(
        {
            "requests": served.total(),
            "by_symbol": dict(served),
            # Venue personalities: HTTP requests received, whatever they asked for.
            "http_requests": exchange.venue_requests,
            "rate_limited_answers": exchange.rate_limited_answers,
            "in_flight": exchange.in_flight,
            "most_in_flight": exchange.most_in_flight,
        }
    )


async def reset_stats(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    exchange.served.clear()
    exchange.venue_requests = exchange.rate_limited_answers = 0
    exchange.most_in_flight = exchange.in_flight
    return await get_stats(request)


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
        return json_response({"msg": f"bad pinned quotes: {exc}"}, 400)
    exchange.pinned.update(pins)
    return json_response(exchange.pinned)


async def clear_pins(request: web.Request) -> web.Response:
    request.app[EXCHANGE].pinned.clear()
    return json_response({})


def create_app(
    *,
    name: str,
    symbols: SymbolList,
    seed: int = 0,
    clock: Callable[[], float] = time.time,
    venue: str | None = None,
    listed: SymbolList | None = None,
    own_paths: frozenset[str] | None = None,
) -> web.Application:
    """One simulated exchange called ``name``; the same seed gives every exchange the same market.

    ``venue`` makes it speak that venue's format (see ``mockex.venues``) for the ``listed``
    symbols (default: all of them; any not among ``symbols`` join them) instead of mockex's own
    ``/mock/ticker`` paths. ``own_paths`` are the pairs priced on paths of their own rather than
    from their assets' USD values (default: those ``mockex.pricing`` picks among ``symbols``, right
    for a symbols file; a realistic universe has none, as ``mockex.cli.markets`` says).
    """
    app = web.Application(middlewares=[count_in_flight])
    listed = listed or symbols
    exchange = Exchange(
        name=name,
        symbols=symbols.union(listed.ordered),
        listed=listed,
        own_paths=pricing.own_paths(symbols.ordered) if own_paths is None else own_paths,
        market=Market(seed),
        clock=clock,
        rng=random.Random(f"{seed}:{name}"),
    )
    app[EXCHANGE] = exchange
    if venue is None:
        app.router.add_get("/mock/ticker/{symbol}", ticker)
        app.router.add_get("/mock/tickers", tickers)
    else:
        personality = PERSONALITIES[venue](exchange)
        app[PERSONALITY] = personality
        app.router.add_routes(personality.routes())
        app.router.add_get("/mock/admin/listing", get_listing)
        app.router.add_post("/mock/admin/listing", set_listing)
        if personality.stream_path is not None:
            hub = StreamHub(personality)
            app.router.add_get(personality.stream_path, hub.handle)
            app.router.add_get("/mock/admin/streams", hub.show)
            app.router.add_post("/mock/admin/streams", hub.control)
            app.cleanup_ctx.append(hub.run)
    app.router.add_get("/mock/admin/faults", get_faults)
    app.router.add_post("/mock/admin/faults", set_faults)
    app.router.add_get("/mock/admin/stats", get_stats)
    app.router.add_delete("/mock/admin/stats", reset_stats)
    app.router.add_post("/mock/admin/quotes", pin_quotes)
    app.router.add_delete("/mock/admin/quotes", clear_pins)
    app.router.add_get("/mock/admin/pegs", get_pegs)
    app.router.add_post("/mock/admin/pegs", set_pegs)
    app.router.add_delete("/mock/admin/pegs", clear_pegs)
    return app
