"""HTTP routes and thin handlers; every error becomes a JSON answer in ``error_response``."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggserver.candles import INTERVALS, build_candles
from aggserver.errors import (
    BackendUnavailable,
    HistoryUnavailable,
    InvalidParameter,
    InvalidSymbol,
    NoValidQuotes,
    PriceNotFound,
    PriceTooOld,
    UnknownSymbol,
)
from aggserver.history import decode_cursor, encode_cursor
from aggserver.keys import (
    CACHE,
    HISTORY_QUERIES,
    HISTORY_READY,
    METRICS_REGISTRY,
    READER,
    REFRESHER,
    REQUEST_STATS,
    SYMBOLS,
)

__all__ = ["add_routes", "error_response", "guarded", "routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

OPENAPI_SPEC = Path(__file__).resolve().parent / "openapi.yaml"
MAX_HISTORY_LIMIT = 1_000
DEFAULT_HISTORY_LIMIT = 100
MAX_CANDLES = 1_000
# Records one candles answer may be computed from (a hot asset records every few seconds).
MAX_CANDLE_RECORDS = 50_000
# Assets one batch read may name; 1,000 symbols fit the request line limit (see create_app).
MAX_BATCH_ASSETS = 1_000


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(exc: Exception) -> web.Response:
    """The one place where a failure is turned into a status and a JSON body."""
    if isinstance(exc, InvalidSymbol):
        return json_response({"msg": "Invalid asset symbol"}, 400)
    if isinstance(exc, InvalidParameter):
        return json_response({"msg": str(exc)}, 400)
    if isinstance(exc, UnknownSymbol | PriceNotFound):
        return json_response({"msg": "Asset not found"}, 404)
    if isinstance(exc, NoValidQuotes):
        return json_response({"msg": "No valid quote from any exchange", "reasons": exc.reasons}, 502)
    if isinstance(exc, PriceTooOld):
        return json_response({"msg": "Price is older than max_age", "age_seconds": exc.age_seconds}, 503)
    if isinstance(exc, HistoryUnavailable):
        return json_response({"msg": "History store unavailable, try again"}, 503)
    if isinstance(exc, BackendUnavailable):
        return json_response({"msg": "Price store unavailable, try again"}, 503)
    if isinstance(exc, web.HTTPException):
        body: dict[str, object] = {"msg": exc.reason}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            body["allowed"] = sorted(exc.allowed_methods)
        response = json_response(body, exc.status)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    log.exception("unhandled error", exc_info=exc)
    return json_response({"msg": "Internal server error"}, 500)


def guarded(route: str) -> Callable[[Handler], Handler]:
    """Wrap a handler so that any failure leaves as JSON (via ``error_response``) and, when
    request metrics are on, the answer is counted and timed under ``route``.

    A wrapper per handler instead of middlewares: aiohttp adds a layer of its own per request
    once any middleware exists, and the price route is measured to the percent.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            stats = request.app[REQUEST_STATS]
            started = time.perf_counter() if stats.enabled else 0.0
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure leaves as JSON, never as HTML
                response = error_response(exc)
            if stats.enabled:
                stats.record(route, response.status, time.perf_counter() - started)
            return response

        return guarded_handler

    return wrap


def add_routes(app: web.Application) -> None:
    """The API's routes, then JSON answers for a wrong method on any of them (405) and for
    any other path (404): no path or method is ever answered with HTML."""
    app.router.add_routes(routes)
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
@guarded("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/ready")
@guarded("/ready")
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
@guarded("/openapi.yaml")
async def openapi_spec(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_SPEC.read_bytes(), content_type="application/yaml")


@routes.get("/health")
@guarded("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: answers as long as the process serves requests."""
    return json_response({"status": "ok"})


def _max_age(request: web.Request) -> float | None:
    raw = request.query.get("max_age")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidParameter("max_age must be a number of seconds, 0 or more")
    return value


def _detail(request: web.Request) -> bool:
    detail = request.query.get("detail")
    if detail not in (None, "sources"):
        raise InvalidParameter("detail must be 'sources'")
    return detail == "sources"


@routes.get("/prices/{asset}")
@guarded("/prices/{asset}")
async def get_price(request: web.Request) -> web.Response:
    """The cached aggregate as stored, with its age and staleness appended."""
    asset = request.match_info["asset"].lower()
    if asset not in request.app[SYMBOLS]:
        raise InvalidSymbol(asset)
    if not request.query_string:
        body = await request.app[READER].answer(asset)
    elif _detail(request):
        body = await request.app[READER].answer_with_sources(asset, _max_age(request))
    else:
        body = await request.app[READER].answer(asset, _max_age(request))
    return web.Response(body=body, content_type="application/json")


@routes.get("/prices")
@guarded("/prices")
async def get_prices(request: web.Request) -> web.Response:
    """Many prices in one answer: ``?assets=btcusdt,ethusdt`` (also repeated ``assets=``)."""
    listed = [
        name.strip()
        for value in request.query.getall("assets", [])
        for name in value.split(",")
        if name.strip()
    ]
    if not listed:
        raise InvalidParameter("assets must list at least one symbol, comma-separated")
    if len(listed) > MAX_BATCH_ASSETS:
        raise InvalidParameter(f"assets lists {len(listed)} symbols; at most {MAX_BATCH_ASSETS} per request")
    symbols = request.app[SYMBOLS]
    known: dict[str, None] = {}
    invalid: list[str] = []
    for name in listed:
        if name.lower() in symbols:
            known[name.lower()] = None
        else:
            invalid.append(name)
    bodies, missing = await request.app[READER].answer_many(list(known))
    body = b'{"prices":[%s],"missing":%s,"invalid":%s}' % (
        b",".join(bodies),
        orjson.dumps(missing),
        orjson.dumps(invalid),
    )
    return web.Response(body=body, content_type="application/json")


@routes.post("/refresh/{asset}")
@guarded("/refresh/{asset}")
async def refresh_price(request: web.Request) -> web.Response:
    asset = request.app[SYMBOLS].resolve(request.match_info["asset"])
    await request.app[REFRESHER].refresh(asset)
    return json_response({"message": f"Price for {asset} refreshed"})


def _whole_number(
    request: web.Request, name: str, default: int, meaning: str = "a time in unix seconds"
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise InvalidParameter(f"{name} must be {meaning}, a whole number")
    return int(raw)


def _known_asset(request: web.Request) -> str:
    asset = request.match_info["asset"].lower()
    if asset not in request.app[SYMBOLS]:
        raise InvalidSymbol(asset)
    return asset


@routes.get("/prices/{asset}/history")
@guarded("/prices/{asset}/history")
async def price_history(request: web.Request) -> web.Response:
    """Recorded aggregates, newest first, a page at a time."""
    asset = _known_asset(request)
    end = _whole_number(request, "to", int(time.time()))
    start = _whole_number(request, "from", 0)
    if start > end:
        raise InvalidParameter("from must not be after to")
    limit = _whole_number(request, "limit", DEFAULT_HISTORY_LIMIT, "a number of records")
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
    before = None
    if "cursor" in request.query:
        try:
            before = decode_cursor(request.query["cursor"], asset)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
    records, more = await request.app[HISTORY_QUERIES].page(
        asset, start=start, end=end, limit=limit, before=before
    )
    return json_response(
        {
            "asset": asset,
            "records": [
                {"timestamp": r.timestamp, "price": r.price, "updated_at": r.updated_at} for r in records
            ],
            "next_cursor": encode_cursor(asset, records[-1].timestamp) if more else None,
        }
    )


@routes.get("/prices/{asset}/candles")
@guarded("/prices/{asset}/candles")
async def price_candles(request: web.Request) -> web.Response:
    """OHLC candles computed from the recorded aggregates, oldest first."""
    asset = _known_asset(request)
    name = request.query.get("interval", "1m")
    interval = INTERVALS.get(name)
    if interval is None:
        raise InvalidParameter(f"interval must be one of {', '.join(INTERVALS)}")
    end = _whole_number(request, "to", int(time.time()))
    start = _whole_number(request, "from", max(0, end - 100 * interval + 1))
    if start > end:
        raise InvalidParameter("from must not be after to")
    if end // interval - start // interval + 1 > MAX_CANDLES:
        raise InvalidParameter(f"from..to spans more than {MAX_CANDLES} candles of {name}")
    try:
        records = await request.app[HISTORY_QUERIES].between(
            asset, start=start, end=end, max_records=MAX_CANDLE_RECORDS
        )
    except ValueError as exc:
        raise InvalidParameter(f"{exc}; narrow from..to") from None
    return json_response(
        {
            "asset": asset,
            "interval": name,
            "candles": [dataclasses.asdict(candle) for candle in build_candles(records, interval)],
        }
    )
