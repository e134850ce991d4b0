"""Answers: JSON bodies, and the one mapping of failures to a status and a JSON body."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from aggserver.domain.reasons import ReasonCode
from aggserver.errors import (
    BackendUnavailable,
    Delisted,
    HistoryBusy,
    HistoryUnavailable,
    InvalidParameter,
    InvalidSymbol,
    NoRecordInRange,
    NotListed,
    NoValidQuotes,
    OverBudget,
    PriceNotFound,
    PriceTooOld,
    QualityRejected,
    ThinCoverage,
    TooManyRefreshes,
    TooManyStreams,
    Unauthorized,
    UnknownSymbol,
)

__all__ = ["ERROR_ANSWERS", "ErrorAnswer", "error_response", "json_response"]

log = logging.getLogger(__name__)


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """How one kind of failure is answered: status, JSON body and headers, from the exception."""

    status: int
    body: Callable[[Any], dict[str, object]]
    headers: Callable[[Any], dict[str, str]] = lambda _: {}


def _retry_after(seconds: Callable[[Any], object]) -> Callable[[Any], dict[str, str]]:
    return lambda exc: {"Retry-After": str(seconds(exc))}


# Looked up along the exception's class hierarchy, most specific first.
ERROR_ANSWERS: dict[type[Exception], ErrorAnswer] = {
    InvalidSymbol: ErrorAnswer(400, lambda _: {"msg": "Invalid asset symbol"}),
    InvalidParameter: ErrorAnswer(400, lambda exc: {"msg": str(exc)}),
    UnknownSymbol: ErrorAnswer(404, lambda _: {"msg": "Asset not found"}),
    Delisted: ErrorAnswer(
        404,
        lambda _: {"msg": "No venue lists this market any more", "reason_code": ReasonCode.DELISTED},
    ),
    PriceNotFound: ErrorAnswer(404, lambda _: {"msg": "Asset not found"}),
    NotListed: ErrorAnswer(404, lambda _: {"msg": "No configured exchange lists this asset"}),
    NoRecordInRange: ErrorAnswer(
        404, lambda exc: {"msg": str(exc), "reason_code": ReasonCode.NO_RECORD_IN_RANGE}
    ),
    ThinCoverage: ErrorAnswer(
        422,
        lambda exc: {
            "msg": str(exc),
            "reason_code": ReasonCode.THIN_COVERAGE,
            "coverage": exc.coverage,
            "min_coverage": exc.required,
        },
    ),
    NoValidQuotes: ErrorAnswer(
        502,
        lambda exc: {
            "msg": "No valid quote from any exchange",
            "reasons": {name: why.detail for name, why in exc.reasons.items()},
            "reason_codes": {name: why.code for name, why in exc.reasons.items()},
        },
    ),
    PriceTooOld: ErrorAnswer(
        503, lambda exc: {"msg": "Price is older than max_age", "age_seconds": exc.age_seconds}
    ),
    QualityRejected: ErrorAnswer(
        503,
        lambda exc: {
            "msg": f"Price fails {exc.rejection.rule}: {exc.rejection.reason}",
            "reason_code": exc.rejection.reason_code,
            "rule": exc.rejection.rule,
            "actual": exc.rejection.actual,
            "required": exc.rejection.required,
        },
    ),
    Unauthorized: ErrorAnswer(
        401,
        lambda _: {"msg": "Missing or wrong bearer token"},
        lambda _: {"WWW-Authenticate": 'Bearer realm="aggserver"'},
    ),
    OverBudget: ErrorAnswer(
        429,
        lambda exc: {"msg": "Request budget spent, slow down", "retry_after": exc.retry_after},
        _retry_after(lambda exc: exc.retry_after),
    ),
    HistoryBusy: ErrorAnswer(
        429,
        lambda exc: {"msg": exc.answer, "retry_after": exc.retry_after},
        _retry_after(lambda exc: exc.retry_after),
    ),
    TooManyRefreshes: ErrorAnswer(
        429, lambda _: {"msg": "Too many refreshes, try again shortly"}, _retry_after(lambda _: 1)
    ),
    TooManyStreams: ErrorAnswer(
        503,
        lambda _: {"msg": "Too many live streams on this server, try again later"},
        _retry_after(lambda _: 5),
    ),
    HistoryUnavailable: ErrorAnswer(503, lambda _: {"msg": "History store unavailable, try again"}),
    BackendUnavailable: ErrorAnswer(503, lambda _: {"msg": "Price store unavailable, try again"}),
}


def error_response(exc: Exception) -> web.Response:
    """The one place where a failure is turned into a status and a JSON body."""
    for kind in type(exc).__mro__:
        answer = ERROR_ANSWERS.get(kind)
        if answer is not None:
            response = json_response(answer.body(exc), answer.status)
            response.headers.update(answer.headers(exc))
            return response
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
