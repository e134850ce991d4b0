"""Prices: one asset, many at once, and a refresh on demand."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from aggserver.domain.reasons import ReasonCode
from aggserver.errors import Delisted, InvalidSymbol
from aggserver.web import params
from aggserver.web.budget import charge
from aggserver.web.guard import GuardedRoutes
from aggserver.web.keys import (
    READER,
    REFRESH_GUARD,
    REFRESHER,
    SYMBOLS,
)
from aggserver.web.responses import json_response

__all__ = ["MAX_BATCH_ASSETS", "routes"]

routes = GuardedRoutes()

# Assets one batch read may name; 1,000 symbols fit the request line limit (see create_app).
MAX_BATCH_ASSETS = 1_000


@routes.get("/prices/{asset}")
async def get_price(request: web.Request) -> web.Response:
    """The cached aggregate as stored, with its age and staleness appended."""
    asset = request.match_info["asset"].lower()
    if asset not in request.app[SYMBOLS]:
        if asset in request.app[SYMBOLS].delisted:
            raise Delisted(asset)
        raise InvalidSymbol(asset)
    if not request.query_string:
        reader = request.app[READER]
        body = reader.answer_near(asset)
        if body is None:
            body = await reader.answer_stored(asset)
        return web.Response(body=body, content_type="application/json")
    params.only(request, ("max_age", "detail", *params.QUALITY))
    guard = params.quality(request)
    if params.detail(request):
        body = await request.app[READER].answer_with_sources(asset, params.max_age(request), guard)
    else:
        body = await request.app[READER].answer(asset, params.max_age(request), guard)
    return web.Response(body=body, content_type="application/json")


@routes.get("/prices")
async def get_prices(request: web.Request) -> web.Response:
    """Many prices in one answer: ``?assets=btcusdt,ethusdt`` (also repeated ``assets=``)."""
    params.only(request, ("assets", *params.QUALITY))
    known, invalid = params.listed_assets(request, limit=MAX_BATCH_ASSETS)
    guard = params.quality(request)
    charge(request, len(known) + len(invalid), "/prices")
    found = await request.app[READER].answer_many(known, guard)
    delisted = request.app[SYMBOLS].delisted
    if delisted:
        gone = [name for name in invalid if name.lower() in delisted]
        invalid = [name for name in invalid if name.lower() not in delisted]
        found.missing.extend(name.lower() for name in gone)
        found.reasons.update((name.lower(), ReasonCode.DELISTED) for name in gone)
    body = b'{"prices":[%s],"missing":%s,"reasons":%s,"rejected":%s,"invalid":%s}' % (
        b",".join(found.bodies),
        orjson.dumps(found.missing),
        orjson.dumps(found.reasons),
        orjson.dumps(found.rejected),
        orjson.dumps(invalid),
    )
    return web.Response(body=body, content_type="application/json")


@routes.post("/refresh/{asset}")
async def refresh_price(request: web.Request) -> web.Response:
    """Refresh now, unless the price is younger than the minimum interval (then it answers)."""
    guard = request.app[REFRESH_GUARD]
    guard.authorize(request.headers.get("Authorization"))
    asset = request.app[SYMBOLS].resolve(request.match_info["asset"])
    params.only(request, ())
    if request.body_exists:
        await request.read()  # no body is needed; past client_max_size this is a 413
    refresher = request.app[REFRESHER]
    if guard.min_interval > 0 and not refresher.running(asset):
        latest = await request.app[READER].latest(asset)
        now = time.time()
        if latest is not None and guard.recent(latest, now):
            return json_response(
                {
                    "message": f"Price for {asset} is fresh, not refreshed again",
                    "refreshed": False,
                    "age_seconds": max(0, int(now) - latest.last_updated),
                }
            )
    if not refresher.running(asset):
        await guard.admit()  # joining a refresh in flight costs the exchanges nothing
    await refresher.refresh(asset)
    return json_response({"message": f"Price for {asset} refreshed", "refreshed": True})
