"""Quality guards and reason codes as pure rules: each guard alone, every form of a quote reason and its
code, and the README's table against the enum."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator

import pytest
import yaml

from aggserver.domain import reasons
from aggserver.domain.reasons import REASON_CODES, QuoteRejected, ReasonCode
from aggserver.exchanges import client
from aggserver.exchanges.throttle import Held, Throttle
from aggserver.venues.base import EnvelopeError, HttpError, VenueError, number
from aggserver.venues.binance import Binance
from aggserver.venues.kraken import Kraken
from aggserver.venues.okx import Okx
from tests.paths import REPO_ROOT


def _rejection_of(raise_it: Callable[[], object]) -> QuoteRejected:
    try:
        raise_it()
    except VenueError as exc:
        return exc.rejection
    raise AssertionError("nothing was raised")


async def _held(*, stopped: bool) -> QuoteRejected:
    """Why a throttle held a request: a stop the venue asked for, or a budget spent on hot work."""
    throttle = Throttle("x", capacity=1, window_seconds=3600)
    if stopped:
        throttle.limited(12)
    else:
        await throttle.acquire(1, urgent=True)
    try:
        await throttle.acquire(1, urgent=stopped)
    except Held as exc:
        return exc.rejection
    raise AssertionError("the request was not held")


def _bad_bulk_field() -> QuoteRejected:
    (outcome,) = Kraken().parse_tickers({"error": [], "result": {"AB": {"c": "1"}}}).values()
    assert isinstance(outcome, QuoteRejected)
    return outcome


# Each place that can leave a quote out, and the code it gives. The words are the venues' or
# ours; the codes are chosen where the failure is raised, so a message that happens to begin like
# another kind (an HTTP error whose text says "rate limited") keeps its own code.
PRODUCERS: dict[str, tuple[Callable[[], QuoteRejected], ReasonCode]] = {
    "429": (lambda: _rejection_of(lambda: Binance().check_status(429, None, {})), ReasonCode.RATE_LIMITED),
    "503": (lambda: _rejection_of(lambda: Binance().check_status(503, None, {})), ReasonCode.HTTP_ERROR),
    "an HTTP error that says rate limited": (
        lambda: HttpError(500, "rate limited upstream").rejection,
        ReasonCode.HTTP_ERROR,
    ),
    "an envelope error": (lambda: EnvelopeError("code 50001: busy").rejection, ReasonCode.VENUE_ERROR),
    "a rate limit in the envelope": (
        lambda: _rejection_of(lambda: Okx().parse_tickers({"code": "50011", "msg": "Too Many Requests"})),
        ReasonCode.RATE_LIMITED,
    ),
    "a bad number": (lambda: _rejection_of(lambda: number("lots", "price")), ReasonCode.BAD_BODY),
    "a bad field in a bulk answer": (_bad_bulk_field, ReasonCode.BAD_BODY),
    "a stopped venue": (lambda: asyncio.run(_held(stopped=True)), ReasonCode.RATE_LIMITED),
    "a spent budget": (lambda: asyncio.run(_held(stopped=False)), ReasonCode.RATE_LIMITED),
    "not listed": (lambda: client.NOT_LISTED, ReasonCode.NOT_LISTED),
    "missing from a bulk answer": (lambda: client.MISSING_FROM_BULK, ReasonCode.NO_QUOTES),
    "no streamed ticker yet": (lambda: client.NOT_STREAMED_YET, ReasonCode.NO_QUOTES),
    "not polled yet": (lambda: client.NOT_POLLED_YET, ReasonCode.NO_QUOTES),
    "the refresh budget": (lambda: client.BUDGET_SPENT, ReasonCode.TIMEOUT),
}


@pytest.mark.parametrize("producer", PRODUCERS)
def test_each_place_that_leaves_a_quote_out_gives_its_code(producer: str) -> None:
    make, code = PRODUCERS[producer]
    rejection = make()
    assert isinstance(rejection, QuoteRejected)
    assert rejection.code is code
    assert rejection.detail


def test_a_reason_is_prefixed_once() -> None:
    reason = QuoteRejected(ReasonCode.BAD_BODY, "price is not positive")
    once = reason.prefixed("invalid quote: ")
    assert once == QuoteRejected(ReasonCode.BAD_BODY, "invalid quote: price is not positive")
    assert once.prefixed("invalid quote: ") == once
    assert str(once) == once.detail


def test_no_reason_code_is_derived_from_words() -> None:
    # The prefix matcher this replaced turned messages back into codes; nothing may again.
    for path in (REPO_ROOT / "aggserver").rglob("*.py"):
        assert 'startswith("outlier' not in path.read_text(), path
    assert not hasattr(reasons, "quote_reason_code")


def test_the_reason_codes_are_documented_where_they_are_answered() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Reason codes") : readme.index("### Live prices")]
    documented = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", section, re.MULTILINE))
    assert documented == {str(code): meaning for code, meaning in REASON_CODES.items()}
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
