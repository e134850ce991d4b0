"""Turning handler outcomes into answers: JSON bodies, the error mapping, request metrics."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from aggserver.errors import (
    BackendUnavailable,
    HistoryBusy,
    HistoryUnavailable,
    InvalidParameter,
    InvalidSymbol,
    NotListed,
    NoValidQuotes,
    OverBudget,
    PriceNotFound,
    PriceTooOld,
    TooManyRefreshes,
    TooManyStreams,
    Unauthorized,
    UnknownSymbol,
)
from aggserver.keys import BUDGETS, REQUEST_STATS

__all__ = ["charge", "error_response", "guarded", "json_response"]

log = logging.getLogger(__name__)


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
    if isinstance(exc, NotListed):
        return json_response({"msg": "No configured exchange lists this asset"}, 404)
    if isinstance(exc, NoValidQuotes):
        return json_response({"msg": "No valid quote from any exchange", "reasons": exc.reasons}, 502)
    if isinstance(exc, PriceTooOld):
        return json_response({"msg": "Price is older than max_age", "age_seconds": exc.age_seconds}, 503)
    if isinstance(exc, Unauthorized):
        response = json_response({"msg": "Missing or wrong bearer token"}, 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="aggserver"'
        return response
    if isinstance(exc, OverBudget):
        response = json_response(
            {"msg": "Request budget spent, slow down", "retry_after": exc.retry_after}, 429
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, HistoryBusy):
        response = json_response(
            {"msg": exc.answer, "retry_after": exc.retry_after},
            429,
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, TooManyRefreshes):
        response = json_response({"msg": "Too many refreshes, try again shortly"}, 429)
        response.headers["Retry-After"] = "1"
        return response
    if isinstance(exc, TooManyStreams):
        response = json_response({"msg": "Too many live streams on this server, try again later"}, 503)
        response.headers["Retry-After"] = "5"
        return response
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


def guarded(route: str, *, free: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a handler so that any failure leaves as JSON (via ``error_response``), the request
    spends 1 from its client's budget (unless ``free``: the health probes), and, when request
    metrics are on, the answer is counted and timed under ``route``.

    A wrapper per handler instead of middlewares: aiohttp adds a layer of its own per request
    once any middleware exists, and the price route is measured to the percent.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            stats = request.app[REQUEST_STATS]
            started = time.perf_counter() if stats.enabled else 0.0
            try:
                budgets = request.app[BUDGETS]
                if budgets.enabled and not free:
                    budgets.spend(request, 1, route)
                if request.body_exists and request.method in ("GET", "HEAD"):
                    raise InvalidParameter("a GET request takes no body")
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure leaves as JSON, never as HTML
                response = error_response(exc)
            if stats.enabled:
                stats.record(route, response.status, time.perf_counter() - started)
            return response

        return guarded_handler

    return wrap


def charge(request: web.Request, cost: float, route: str) -> None:
    """Spend what a request costs beyond the 1 its route already took (a batch's assets, a
    history page's records...); OverBudget when the client cannot afford it."""
    budgets = request.app[BUDGETS]
    if budgets.enabled and cost > 1:
        budgets.spend(request, cost - 1, route)
