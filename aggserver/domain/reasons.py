"""Machine-readable reason codes, and why a source gave no usable quote, as a value.

Quotes are left out, assets go missing and answers are refused for reasons written for people
("quote is 42 s old", "HTTP 503: busy"). Integrators need a code they can branch on, so every
such place answers ``reason_code`` too. The code is chosen where the failure happens (the venue
adapter, the transport, the throttle, the aggregation) and travels with the words as a
:class:`QuoteRejected`: rewording a message never changes the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["REASON_CODES", "QuoteRejected", "ReasonCode"]


class ReasonCode(StrEnum):
    """Every code an answer may carry (the README's "Reason codes" table lists them too)."""

    OUTLIER = "outlier"
    STALE_QUOTE = "stale_quote"
    FUTURE_QUOTE = "future_quote"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    UNREACHABLE = "unreachable"
    BAD_BODY = "bad_body"
    VENUE_ERROR = "venue_error"
    RATE_LIMITED = "rate_limited"
    BREAKER_OPEN = "breaker_open"
    NOT_LISTED = "not_listed"
    NO_QUOTES = "no_quotes"
    NO_PRICE = "no_price"
    STORE_UNAVAILABLE = "store_unavailable"
    TOO_FEW_SOURCES = "too_few_sources"
    TOO_DISPERSED = "too_dispersed"
    NO_RECORD_IN_RANGE = "no_record_in_range"
    THIN_COVERAGE = "thin_coverage"
    HISTORY_BUSY = "history_busy"
    HISTORY_UNAVAILABLE = "history_unavailable"
    DELISTED = "delisted"
    NO_RATE = "no_rate"
    STALE_RATE = "stale_rate"


# What each code means, as the README's table says it.
REASON_CODES: dict[ReasonCode, str] = {
    ReasonCode.OUTLIER: "the quote lies too far from the median of the others",
    ReasonCode.STALE_QUOTE: "the quote is older than QUOTE_MAX_AGE_SECONDS",
    ReasonCode.FUTURE_QUOTE: "the quote's timestamp lies in the future",
    ReasonCode.TIMEOUT: "the exchange did not answer in time (its timeout or the refresh budget)",
    ReasonCode.HTTP_ERROR: "the exchange answered with an HTTP error status",
    ReasonCode.UNREACHABLE: "the request failed before an answer (connection refused or reset)",
    ReasonCode.BAD_BODY: "the answer was not a valid quote (not JSON, wrong shape, bad numbers)",
    ReasonCode.VENUE_ERROR: "the venue reported an error inside its answer",
    ReasonCode.RATE_LIMITED: "the venue asked us to slow down, or our rate budget for it is spent",
    ReasonCode.BREAKER_OPEN: "the exchange failed repeatedly; its circuit breaker is open",
    ReasonCode.NOT_LISTED: "the exchange does not list the asset",
    ReasonCode.NO_QUOTES: "the exchange has no quote of the asset (yet)",
    ReasonCode.NO_PRICE: "no price of the asset is stored",
    ReasonCode.STORE_UNAVAILABLE: "Redis did not answer and this process has no price of the asset",
    ReasonCode.TOO_FEW_SOURCES: "the price has fewer sources than min_sources",
    ReasonCode.TOO_DISPERSED: "the price's dispersion is above max_dispersion",
    ReasonCode.NO_RECORD_IN_RANGE: "history holds no record where the answer needs one",
    ReasonCode.THIN_COVERAGE: "history covers less of a TWAP window than min_coverage",
    ReasonCode.HISTORY_BUSY: "this process reads as much history as it may right now",
    ReasonCode.HISTORY_UNAVAILABLE: "DynamoDB did not answer",
    ReasonCode.DELISTED: "no venue lists the market any more (its history stays readable)",
    ReasonCode.NO_RATE: "no USD rate of the market's quote currency is known",
    ReasonCode.STALE_RATE: "the USD rate of the market's quote currency is older than QUOTE_MAX_AGE_SECONDS",
}


@dataclass(frozen=True, slots=True)
class QuoteRejected:
    """Why one source gave no usable quote of an asset: ``code`` to branch on, ``detail`` for
    people (shown as ``reason`` in ``detail=sources``, a refresh's 502 and the venue probe)."""

    code: ReasonCode
    detail: str

    def __str__(self) -> str:
        return self.detail

    def prefixed(self, prefix: str) -> QuoteRejected:
        """The same reason with ``prefix`` before its words (once: never twice)."""
        if self.detail.startswith(prefix):
            return self
        return QuoteRejected(self.code, f"{prefix}{self.detail}")
