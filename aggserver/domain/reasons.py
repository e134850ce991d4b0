"""Machine-readable reason codes: one documented enum beside every human-readable reason.

Quotes are left out, assets go missing and answers are refused for reasons written for people
("quote is 42 s old", "HTTP 503: busy"). Integrators need a code they can branch on, so every
such place answers ``reason_code`` too. The reasons of excluded quotes come from the exchanges
and the aggregation in many forms; :func:`quote_reason_code` maps each form (by its fixed
beginning) to its code, and ``tests/unit/domain/test_quality_and_reasons.py`` holds an example of every form.
"""

from __future__ import annotations

__all__ = ["REASON_CODES", "quote_reason_code"]

# Every code an answer may carry, and what it means (README "Reason codes" lists them too).
REASON_CODES: dict[str, str] = {
    "outlier": "the quote lies too far from the median of the others",
    "stale_quote": "the quote is older than QUOTE_MAX_AGE_SECONDS",
    "future_quote": "the quote's timestamp lies in the future",
    "timeout": "the exchange did not answer in time (its timeout or the refresh budget)",
    "http_error": "the exchange answered with an HTTP error status",
    "unreachable": "the request failed before an answer (connection refused or reset)",
    "bad_body": "the answer was not a valid quote (not JSON, wrong shape, bad numbers)",
    "venue_error": "the venue reported an error inside its answer",
    "rate_limited": "the venue asked us to slow down, or our rate budget for it is spent",
    "breaker_open": "the exchange failed repeatedly; its circuit breaker is open",
    "not_listed": "the exchange does not list the asset",
    "no_quotes": "the exchange has no quote of the asset (yet)",
    "no_price": "no price of the asset is stored",
    "store_unavailable": "Redis did not answer and this process has no price of the asset",
    "too_few_sources": "the price has fewer sources than min_sources",
    "too_dispersed": "the price's dispersion is above max_dispersion",
    "no_record_in_range": "history holds no record where the answer needs one",
    "thin_coverage": "history covers less of a TWAP window than min_coverage",
    "history_busy": "this process reads as much history as it may right now",
    "history_unavailable": "DynamoDB did not answer",
}

# The fixed beginnings of the quote reasons, most specific first.
_QUOTE_REASONS: tuple[tuple[str, str], ...] = (
    ("outlier:", "outlier"),
    ("quote timestamp is in the future", "future_quote"),
    ("quote is ", "stale_quote"),
    ("timed out", "timeout"),
    ("rate limited", "rate_limited"),
    ("rate budget kept", "rate_limited"),
    ("circuit open", "breaker_open"),
    ("HTTP ", "http_error"),
    ("request failed", "unreachable"),
    ("not listed", "not_listed"),
    ("missing from bulk answer", "no_quotes"),
    ("no streamed ticker yet", "no_quotes"),
    ("not polled yet", "no_quotes"),
    ("venue error", "venue_error"),
)


def quote_reason_code(reason: str) -> str:
    """The code of a reason an exchange's quote was left out; ``bad_body`` for the many ways an
    answer can fail to be a quote (the venues' parsers word each one differently)."""
    for beginning, code in _QUOTE_REASONS:
        if reason.startswith(beginning):
            return code
    return "bad_body"
