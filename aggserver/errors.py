"""The domain's exceptions, each answered by one entry of ``responses.ERROR_ANSWERS``.

AggError
 ├── InvalidSymbol        malformed asset symbol                           -> 400
 ├── InvalidParameter     a malformed query parameter                      -> 400
 ├── UnknownSymbol        well-formed but not in symbols.csv               -> 404
 ├── Delisted             priced until a venue listing reload removed it   -> 404
 ├── PriceNotFound        known symbol without a price anywhere            -> 404
 ├── NotListed            known symbol no configured exchange lists        -> 404
 ├── NoRecordInRange      no history record where an oracle answer needs one -> 404
 ├── ThinCoverage         a TWAP window too little of which history covers   -> 422
 ├── PriceTooOld          the price is older than the client's max_age     -> 503
 ├── QualityRejected      the price fails the client's min_sources or max_dispersion -> 503
 ├── NoValidQuotes        every exchange failed or sent a bad quote        -> 502
 ├── Unauthorized         POST /refresh without the right bearer token     -> 401
 ├── OverBudget           the client spent its request budget              -> 429
 ├── HistoryBusy          history reads past their bounds                  -> 429
 ├── TooManyRefreshes     refreshes of one asset too close together        -> 429
 ├── TooManyStreams       this process serves as many streams as it may    -> 503
 └── BackendUnavailable   Redis could not be reached in time               -> 503
      └── HistoryUnavailable  DynamoDB could not be reached in time        -> 503
ConfigError               a setting or input file is unusable (start-up only)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggserver.domain.quality import Rejection
    from aggserver.domain.reasons import QuoteRejected

__all__ = [
    "AggError",
    "BackendUnavailable",
    "ConfigError",
    "Delisted",
    "HistoryBusy",
    "HistoryUnavailable",
    "InvalidParameter",
    "InvalidSymbol",
    "NoRecordInRange",
    "NoValidQuotes",
    "NotListed",
    "OverBudget",
    "PriceNotFound",
    "PriceTooOld",
    "QualityRejected",
    "ThinCoverage",
    "TooManyRefreshes",
    "TooManyStreams",
    "Unauthorized",
    "UnknownSymbol",
]


class AggError(Exception):
    """Base of every error a request can end in."""


class InvalidSymbol(AggError):
    """The path segment cannot be an asset symbol at all."""


class InvalidParameter(AggError):
    """A query parameter that cannot be used; the message says which and why."""


class UnknownSymbol(AggError):
    """The symbol is well-formed but not one of ours."""


class Delisted(AggError):
    """The symbol was priced until the venues stopped listing it; its history stays readable."""


class PriceNotFound(AggError):
    """No price is cached for a known symbol."""


class NotListed(AggError):
    """No configured exchange lists the symbol, so it cannot be priced (now)."""


class NoRecordInRange(AggError):
    """History holds no record where the answer needs one; the message says where it looked."""


class ThinCoverage(AggError):
    """History covers less of a TWAP window than the client asked for (``min_coverage``)."""

    def __init__(self, coverage: float, required: float) -> None:
        super().__init__(f"history covers {coverage:.3f} of the window, {required:g} required")
        self.coverage = coverage
        self.required = required


class PriceTooOld(AggError):
    """The price is older than the client accepts; ``age_seconds`` says how old."""

    def __init__(self, age_seconds: int) -> None:
        super().__init__(f"price is {age_seconds} s old")
        self.age_seconds = age_seconds


class QualityRejected(AggError):
    """The price fails a quality guard the client asked for; ``rejection`` says which and how."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


class NoValidQuotes(AggError):
    """A refresh got no usable quote; ``reasons`` says why per exchange."""

    def __init__(self, reasons: dict[str, QuoteRejected]) -> None:
        super().__init__("no valid quote from any exchange")
        self.reasons = reasons


class BackendUnavailable(AggError):
    """A backend the request depends on did not answer."""


class HistoryUnavailable(BackendUnavailable):
    """DynamoDB did not answer a history query."""


class TooManyStreams(AggError):
    """This process already serves as many live streams as it allows."""


class Unauthorized(AggError):
    """POST /refresh without the bearer token REFRESH_TOKEN asks for."""


class TooManyRefreshes(AggError):
    """The global refresh rate (REFRESH_RATE_LIMIT) is used up for now."""


class OverBudget(AggError):
    """The client has spent its request budget; ``retry_after`` seconds until this request fits."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"request budget spent; retry in {retry_after} s")
        self.retry_after = max(1, retry_after)


class HistoryBusy(AggError):
    """This process reads as much history as it may: HISTORY_MAX_QUERIES queries in flight, or
    HISTORY_RECORDS_PER_SECOND spent. ``answer`` is the client's message."""

    def __init__(self, detail: str, *, answer: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.answer = answer
        self.retry_after = max(1, retry_after)


class ConfigError(Exception):
    """A setting or input file cannot be used; raised only while starting."""
