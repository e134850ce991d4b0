"""HTTP routes and thin handlers; every error becomes a JSON answer (``responses.guarded``)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggserver.domain.candles import INTERVALS
from aggserver.errors import InvalidParameter, InvalidSymbol
from aggserver.web import params
from aggserver.web.budget import charge
from aggserver.web.guard import GuardedRoutes, guarded
from aggserver.web.keys import (
    CACHE,
    FRESHNESS,
    HISTORY_QUERIES,
    HISTORY_READY,
    HISTORY_WRITER,
    INGESTOR,
    LEASE,
    METRICS_REGISTRY,
    OUTBOX,
    READER,
    REFRESH_GUARD,
    REFRESHER,
    SCHEDULER,
    STREAM_HUB,
    SYMBOLS,
    TIERS,
)
from aggserver.web.responses import json_response
from aggserver.web.routes import oracle as oracle_routes
from aggserver.web.routes import streams as stream_routes
from aggserver.web.telemetry import exchange_stats

__all__ = ["add_routes", "routes"]

routes = GuardedRoutes()

OPENAPI_SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard.html"
MAX_HISTORY_LIMIT = 1_000
DEFAULT_HISTORY_LIMIT = 100
MAX_CANDLES = 1_000
# Assets one batch read may name; 1,000 symbols fit the request line limit (see create_app).
MAX_BATCH_ASSETS = 1_000


def add_routes(app: web.Application) -> None:
    """The API's routes, then JSON answers for a wrong method on any of them (405) and for
    any other path (404): no path or method is ever answered with HTML."""
    app.router.add_routes(routes)
    # After /prices/{asset}, so a price read tries it first; /prices/at still wins for its own
    # path, since aiohttp looks up a whole path before the prefixes of dynamic routes.
    app.router.add_routes(oracle_routes.routes)
    app.router.add_routes(stream_routes.routes)
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):
            continue
        allowed = sorted({route.method for route in resource})

        @guarded(resource.canonical)
        async def method_not_allowed(request: web.Request, allowed: list[str] = allowed) -> web.Response:
            raise web.HTTPMethodNotAllowed(request.method, allowed)

        resource.add_route("*", method_not_allowed)

    @guarded("unmatched")
    async def not_found(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app.router.add_route("*", "/{path:.*}", not_found)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/ready", free=True)
async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 only when Redis answers and the DynamoDB table is reachable."""
    checks = {
        "redis": await request.app[CACHE].ping(),
        "dynamodb": await request.app[HISTORY_READY](),
    }
    body: dict[str, object] = {name: "ok" if ok else "down" for name, ok in checks.items()}
    if all(checks.values()):
        return json_response({"status": "ready", **body})
    down = ", ".join(name for name, ok in checks.items() if not ok)
    return json_response({"msg": f"Not ready: {down} unreachable", **body}, 503)


@routes.get("/openapi.yaml")
async def openapi_spec(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_SPEC.read_bytes(), content_type="application/yaml")


@routes.get("/health", free=True)
async def health(request: web.Request) -> web.Response:
    """Liveness: answers as long as the process serves requests."""
    return json_response({"status": "ok"})


@routes.get("/prices/{asset}")
async def get_price(request: web.Request) -> web.Response:
    """The cached aggregate as stored, with its age and staleness appended."""
    asset = request.match_info["asset"].lower()
    if asset not in request.app[SYMBOLS]:
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


@routes.get("/prices/{asset}/history")
async def price_history(request: web.Request) -> web.Response:
    """Recorded aggregates, newest first, a page at a time."""
    asset = params.known_asset(request)
    params.only(request, ("from", "to", "limit", "cursor"))
    end = params.whole_number(request, "to", int(time.time()))
    start = params.whole_number(request, "from", 0)
    if start > end:
        raise InvalidParameter("from must not be after to")
    limit = params.whole_number(request, "limit", DEFAULT_HISTORY_LIMIT, "a number of records")
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
    before = None
    if "cursor" in request.query:
        try:
            before = params.decode_cursor(request.query["cursor"], asset)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
    charge(request, limit, "/prices/{asset}/history")
    records, more = await request.app[HISTORY_QUERIES].page(
        asset, start=start, end=end, limit=limit, before=before
    )
    return json_response(
        {
            "asset": asset,
            "records": [
                {"timestamp": r.timestamp, "price": r.price, "updated_at": r.updated_at} for r in records
            ],
            "next_cursor": params.encode_cursor(asset, records[-1].timestamp) if more else None,
        }
    )


@routes.get("/prices/{asset}/candles")
async def price_candles(request: web.Request) -> web.Response:
    """OHLC candles from the rollups, oldest first: every whole candle that from..to touches."""
    asset = params.known_asset(request)
    params.only(request, ("interval", "from", "to"))
    name = request.query.get("interval", "1m")
    interval = INTERVALS.get(name)
    if interval is None:
        raise InvalidParameter(f"interval must be one of {', '.join(INTERVALS)}")
    end = params.whole_number(request, "to", int(time.time()))
    start = params.whole_number(request, "from", max(0, end - 100 * interval + 1))
    if start > end:
        raise InvalidParameter("from must not be after to")
    first, last = start - start % interval, end - end % interval
    candles = (last - first) // interval + 1
    if candles > MAX_CANDLES:
        raise InvalidParameter(f"from..to spans more than {MAX_CANDLES} candles of {name}")
    charge(request, candles, "/prices/{asset}/candles")
    found = await request.app[HISTORY_QUERIES].candles(asset, name, first=first, last=last)
    return json_response(
        {
            "asset": asset,
            "interval": name,
            "candles": [
                {
                    "start": c.start,
                    "open": c.open,
                    "high": c.high,
                    "low": c.low,
                    "close": c.close,
                    "samples": c.samples,
                }
                for c in found
            ],
        }
    )


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    """What this process sees of the service, for the dashboard (Prometheus has the rest)."""
    app = request.app
    tiers = app[TIERS]
    scheduler, lease, outbox = app[SCHEDULER].stats(), app[LEASE].stats(), app[OUTBOX].stats()
    state = outbox.state
    outcomes: dict[str, dict[str, int]] = {}
    for (tier, outcome), count in app[REFRESHER].stats().outcomes.items():
        outcomes.setdefault(tier, {})[outcome] = count
    return json_response(
        {
            "hot": tiers.members(tiers.hot),
            "exchanges": [
                {
                    "name": exchange.name,
                    "venue": exchange.venue,
                    "circuit": exchange.circuit.value,
                    "requests": exchange.requests,
                    "errors": exchange.errors,
                    "listed": exchange.listed,
                    "listing_loaded_at": exchange.listing_loaded_at,
                    "listing_error": exchange.listing_error,
                    "rate_limited": exchange.rate_limited,
                    "held": exchange.held,
                    "blocked_seconds": round(exchange.blocked_seconds, 1),
                    "stream": app[INGESTOR].status(exchange.name),
                }
                for exchange in exchange_stats(app)
            ],
            "refresh": {
                "runs_scheduler": lease.held,
                "shards": lease.shards,
                "owned_shards": sorted(lease.owned),
                "round_seconds": scheduler.rounds,
                "catch_up_seconds": scheduler.catch_up_seconds,
                "outcomes": outcomes,
            },
            "history": {
                "writer": app[HISTORY_WRITER].mode,
                "pending": state.backlog + outbox.in_memory,
                "backlog": state.backlog,
                "in_memory": outbox.in_memory,
                "oldest_seconds": None if state.oldest_seconds is None else round(state.oldest_seconds, 1),
                "writers_alive": state.writers_alive,
                "written": state.written,
                "retried": state.retried,
                "reclaimed": state.reclaimed,
                "dropped": outbox.dropped,
                "rollups_due": state.rollups_due,
                "error": state.error,
            },
            "streams": app[STREAM_HUB].stats().connections,
            "freshness": await app[FRESHNESS].summary(),
        }
    )


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    """The live dashboard: one static page, everything it needs served from here."""
    return web.Response(body=DASHBOARD.read_bytes(), content_type="text/html", charset="utf-8")
