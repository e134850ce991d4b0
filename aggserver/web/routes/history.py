"""History: recorded aggregates page by page, and candles."""

from __future__ import annotations

import time

from aiohttp import web

from aggserver.domain.candles import INTERVALS
from aggserver.errors import InvalidParameter
from aggserver.web import params
from aggserver.web.budget import charge
from aggserver.web.guard import GuardedRoutes
from aggserver.web.keys import (
    HISTORY_QUERIES,
)
from aggserver.web.responses import json_response

__all__ = ["DEFAULT_HISTORY_LIMIT", "MAX_CANDLES", "MAX_HISTORY_LIMIT", "routes"]

routes = GuardedRoutes()

MAX_HISTORY_LIMIT = 1_000
DEFAULT_HISTORY_LIMIT = 100
MAX_CANDLES = 1_000


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
