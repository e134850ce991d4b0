"""The oracle answers over HTTP: the price in force at a time (one asset or many), TWAP and change.

The rules are ``domain/oracle.py``'s; the records come through ``HistoryQueries``, so these reads share
the history bounds that keep price reads from starving.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from aggserver.domain.oracle import relative_change, time_weighted_average
from aggserver.domain.reasons import ReasonCode
from aggserver.errors import HistoryBusy, HistoryUnavailable, InvalidParameter, NoRecordInRange, ThinCoverage
from aggserver.history.reads import HistoryQueries
from aggserver.history.records import HistoryRecord
from aggserver.web import params
from aggserver.web.budget import charge
from aggserver.web.guard import GuardedRoutes
from aggserver.web.keys import HISTORY_QUERIES, READER
from aggserver.web.responses import json_response

__all__ = ["routes"]

routes = GuardedRoutes()

DEFAULT_MAX_GAP = 3_600
MAX_GAP = 30 * 86_400
MAX_AT_ASSETS = 100
# History queries one batch ``at`` read runs at once: it shares HISTORY_MAX_QUERIES with others.
AT_BATCH_CONCURRENCY = 2
MIN_TWAP_WINDOW = 60
MAX_TWAP_WINDOW = 7 * 86_400
DEFAULT_MIN_COVERAGE = 0.5
TWAP_COST = 10
PERIODS = {"1h": 3_600, "24h": 86_400, "7d": 7 * 86_400}


def _at_params(request: web.Request) -> tuple[int, int]:
    now = int(time.time())
    if "timestamp" not in request.query:
        raise InvalidParameter("timestamp is required (unix seconds)")
    at = params.whole_number(request, "timestamp", now, "unix seconds")
    if at > now:
        raise InvalidParameter("timestamp must not be in the future")
    max_gap = params.whole_number(request, "max_gap", DEFAULT_MAX_GAP, "seconds")
    if not 1 <= max_gap <= MAX_GAP:
        raise InvalidParameter(f"max_gap must be between 1 and {MAX_GAP}")
    return at, max_gap


def _in_force(asset: str, at: int, record: HistoryRecord) -> dict[str, object]:
    return {
        "asset": asset,
        "at": at,
        "price": record.price,
        "timestamp": record.timestamp,
        "updated_at": record.updated_at,
        "gap_seconds": at - record.timestamp,
    }


async def _record_at(queries: HistoryQueries, asset: str, at: int, max_gap: int) -> HistoryRecord:
    record = await queries.record_at(asset, at, max_gap=max_gap)
    if record is None:
        raise NoRecordInRange(f"No price of {asset} recorded in the {max_gap} s up to {at}")
    return record


@routes.get("/prices/at")
async def prices_at(request: web.Request) -> web.Response:
    """Many assets' prices in force at one time: ``?assets=a,b&timestamp=T[&max_gap=S]``."""
    params.only(request, ("assets", "timestamp", "max_gap"))
    known, invalid = params.listed_assets(request, limit=MAX_AT_ASSETS)
    at, max_gap = _at_params(request)
    charge(request, len(known) + len(invalid), "/prices/at")
    queries = request.app[HISTORY_QUERIES]
    slots = asyncio.Semaphore(AT_BATCH_CONCURRENCY)

    async def one(asset: str) -> dict[str, object]:
        async with slots:
            try:
                return _in_force(asset, at, await _record_at(queries, asset, at, max_gap))
            except NoRecordInRange as exc:
                return {"asset": asset, "reason_code": ReasonCode.NO_RECORD_IN_RANGE, "reason": str(exc)}
            except HistoryBusy as exc:
                return {"asset": asset, "reason_code": ReasonCode.HISTORY_BUSY, "reason": str(exc)}
            except HistoryUnavailable as exc:
                return {"asset": asset, "reason_code": ReasonCode.HISTORY_UNAVAILABLE, "reason": str(exc)}

    answers = await asyncio.gather(*(one(asset) for asset in known))
    if answers and all(a.get("reason_code") is ReasonCode.HISTORY_UNAVAILABLE for a in answers):
        raise HistoryUnavailable("every lookup failed")
    return json_response(
        {
            "at": at,
            "prices": [a for a in answers if "price" in a],
            "missing": [a for a in answers if "price" not in a],
            "invalid": invalid,
        }
    )


@routes.get("/prices/{asset}/at")
async def price_at(request: web.Request) -> web.Response:
    """The aggregate in force at ``timestamp``: the latest record at or before it."""
    asset = params.known_asset(request)
    params.only(request, ("timestamp", "max_gap"))
    at, max_gap = _at_params(request)
    record = await _record_at(request.app[HISTORY_QUERIES], asset, at, max_gap)
    return json_response(_in_force(asset, at, record))


@routes.get("/prices/{asset}/twap")
async def price_twap(request: web.Request) -> web.Response:
    """The time-weighted average price over the last ``window`` seconds."""
    asset = params.known_asset(request)
    params.only(request, ("window", "min_coverage"))
    window = params.whole_number(request, "window", 3_600, "seconds")
    if not MIN_TWAP_WINDOW <= window <= MAX_TWAP_WINDOW:
        raise InvalidParameter(f"window must be between {MIN_TWAP_WINDOW} and {MAX_TWAP_WINDOW} seconds")
    min_coverage = params.fraction(request, "min_coverage", DEFAULT_MIN_COVERAGE)
    charge(request, TWAP_COST, "/prices/{asset}/twap")
    end = int(time.time())
    start = end - window
    points, resolution = await request.app[HISTORY_QUERIES].price_points(asset, start, end)
    twap = time_weighted_average(points, start, end)
    if twap is None:
        raise NoRecordInRange(f"No price of {asset} in force during the last {window} s")
    if twap.coverage < min_coverage:
        raise ThinCoverage(twap.coverage, min_coverage)
    return json_response(
        {
            "asset": asset,
            "twap": twap.price,
            "start": start,
            "end": end,
            "window": window,
            "coverage": twap.coverage,
            "points": twap.points,
            "resolution": resolution,
        }
    )


@routes.get("/prices/{asset}/change")
async def price_change(request: web.Request) -> web.Response:
    """The price now against the record in force ``period`` ago."""
    asset = params.known_asset(request)
    params.only(request, ("period",))
    name = request.query.get("period", "24h")
    period = PERIODS.get(name)
    if period is None:
        raise InvalidParameter(f"period must be one of {', '.join(PERIODS)}")
    latest = await request.app[READER].latest(asset)
    if latest is None:
        raise NoRecordInRange(f"No current price of {asset}")
    then = latest.last_updated - period
    # The earlier price must itself lie within one period before that moment.
    before = await _record_at(request.app[HISTORY_QUERIES], asset, then, period)
    change = relative_change(before.price, latest.price)
    return json_response(
        {
            "asset": asset,
            "period": name,
            "change": change,
            "price": latest.price,
            "timestamp": latest.last_updated,
            "previous_price": before.price,
            "previous_timestamp": before.timestamp,
        }
    )
