"""Quality guards and reason codes as pure rules: each guard alone, every form of a quote reason and its
code, and the README's table against the enum."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml

from aggserver.domain.reasons import REASON_CODES, quote_reason_code
from tests.paths import REPO_ROOT

# One example of every form a reason for leaving a quote out takes, and its code.
QUOTE_REASONS = {
    "outlier: +12.0% from the median": "outlier",
    "quote timestamp is in the future": "future_quote",
    "quote is 42 s old": "stale_quote",
    "timed out": "timeout",
    "timed out (refresh budget)": "timeout",
    "rate limited (HTTP 429)": "rate_limited",
    "rate limited: no requests for another 12 s": "rate_limited",
    "rate budget kept for hot assets": "rate_limited",
    "circuit open": "breaker_open",
    "HTTP 503": "http_error",
    "HTTP 500: code -1001": "http_error",
    "request failed: ClientConnectorError": "unreachable",
    "not listed": "not_listed",
    "missing from bulk answer": "no_quotes",
    "no streamed ticker yet": "no_quotes",
    "not polled yet": "no_quotes",
    "venue error: code 50001: busy": "venue_error",
    "body is not JSON": "bad_body",
    "content type text/html is not JSON": "bad_body",
    "invalid quote: price is not positive": "bad_body",
    "price is not a number: 'lots'": "bad_body",
}


@pytest.mark.parametrize(("reason", "code"), QUOTE_REASONS.items())
def test_every_form_of_quote_reason_has_its_code(reason: str, code: str) -> None:
    assert quote_reason_code(reason) == code
    assert code in REASON_CODES


def test_the_reason_codes_are_documented_where_they_are_answered() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Reason codes") : readme.index("### Live prices")]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert documented == set(REASON_CODES)
    codes = set(_answered_codes(yaml.safe_load((REPO_ROOT / "openapi.yaml").read_text())))
    assert "outlier" in codes
    assert codes <= set(REASON_CODES)


def _answered_codes(node: object) -> Iterator[str]:
    """Every code openapi.yaml lets a ``reason_code``, ``reason_codes`` or ``reasons`` hold."""
    if isinstance(node, list):
        for item in node:
            yield from _answered_codes(item)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "reason_code" and isinstance(value, dict):
            yield from value.get("enum", [value["const"]] if "const" in value else [])
        elif key in ("reason_codes", "reasons") and isinstance(value, dict):
            yield from value.get("additionalProperties", {}).get("enum", [])
        yield from _answered_codes(value)
