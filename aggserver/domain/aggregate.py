"""Pure aggregation: quotes in (``domain/quotes.py``), one volume-weighted price out. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode

if TYPE_CHECKING:
    from aggserver.domain.conversion import Converted

__all__ = [
    "Aggregate",
    "QuotePolicy",
    "Selection",
    "aggregate",
    "breakdown",
    "dispersion",
    "select_quotes",
    "volume_weighted_price",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """The combined price of one asset: what we cache and record."""

    asset: str
    price: float
    last_updated: int
    sources: int
    # How far apart the accepted quotes were, relative to the price (see ``dispersion``).
    dispersion: float = 0.0
    # ``last_updated`` in milliseconds where a venue gave its time that precisely, else None.
    last_updated_ms: int | None = None


def volume_weighted_price(quotes: Sequence[Quote]) -> float:
    """The volume-weighted mean of the quotes' prices.

    Falls back to the plain mean when no quote carries volume, so a price still exists when
    every venue reports zero trading. Raises ValueError for no quotes.
    """
    if not quotes:
        raise ValueError("no quotes to aggregate")
    total_volume = math.fsum(q.volume for q in quotes)
    if total_volume > 0 and math.isfinite(total_volume):
        weighted = math.fsum(q.price * (q.volume / total_volume) for q in quotes)
    else:
        weighted = math.fsum(q.price for q in quotes) / len(quotes)
    # Rounding can land a hair outside the quotes' range; never report a price no venue quoted.
    return min(max(weighted, min(q.price for q in quotes)), max(q.price for q in quotes))


def dispersion(quotes: Sequence[Quote], price: float) -> float:
    """The relative spread of the quotes: (highest - lowest) / ``price``.

    0 for a single quote or full agreement; 0.01 means the venues disagree by 1% of the price.
    Chosen over a weighted standard deviation because with three venues it says plainly how far
    apart they are, does not depend on volumes, and is unchanged when every price is scaled.
    """
    if not quotes:
        raise ValueError("no quotes to measure")
    prices = [q.price for q in quotes]
    return (max(prices) - min(prices)) / price


def aggregate(asset: str, quotes: Iterable[Quote]) -> Aggregate:
    """Combine valid quotes into one Aggregate; ValueError when there are none."""
    accepted = list(quotes)
    price = volume_weighted_price(accepted)
    return Aggregate(
        asset=asset,
        price=price,
        last_updated=max(q.timestamp for q in accepted),
        sources=len(accepted),
        dispersion=dispersion(accepted, price),
        # Only where a venue gave milliseconds: whole seconds times 1000 would say nothing new.
        last_updated_ms=max(q.moment_ms for q in accepted)
        if any(q.timestamp_ms is not None for q in accepted)
        else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotePolicy:
    """When a valid quote is still not trusted: too far from its peers, too old, or from the future."""

    # Relative distance from the median of the quotes beyond which a quote is an outlier.
    outlier_threshold: float = 0.05
    # A source dropped as an outlier comes back only within this fraction of the threshold.
    readmit_fraction: float = 0.5
    max_age_seconds: float = 120.0
    max_future_seconds: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    accepted: list[Quote]
    rejected: dict[str, QuoteRejected]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def select_quotes(
    quotes: Sequence[Quote],
    *,
    now: float,
    policy: QuotePolicy,
    distrusted: frozenset[str] | set[str] = frozenset(),
    reference: float | None = None,
) -> Selection:
    """Drop quotes that are stale, from the future, or outliers; the rest are safe to weight.

    The centre is the median of the fresh quotes. With two quotes the median is their midpoint,
    so two venues that disagree by more than twice the threshold are both dropped; then
    ``reference`` (the last good price), when given, decides which of them, if any, to keep.
    A source in ``distrusted`` (dropped as an outlier earlier) must come within
    ``readmit_fraction`` of the threshold to count again, so a flapping venue cannot make the
    price jump back and forth.
    """
    rejected: dict[str, QuoteRejected] = {}
    fresh: list[Quote] = []
    for quote in quotes:
        if quote.timestamp < now - policy.max_age_seconds:
            rejected[quote.source] = QuoteRejected(
                ReasonCode.STALE_QUOTE, f"quote is {now - quote.timestamp:.0f} s old"
            )
        elif quote.timestamp > now + policy.max_future_seconds:
            rejected[quote.source] = QuoteRejected(
                ReasonCode.FUTURE_QUOTE, "quote timestamp is in the future"
            )
        else:
            fresh.append(quote)
    if not fresh:
        return Selection(accepted=[], rejected=rejected)

    def within(centre: float, quote: Quote) -> bool:
        limit = policy.outlier_threshold
        if quote.source in distrusted:
            limit *= policy.readmit_fraction
        return abs(quote.price / centre - 1) <= limit

    centre = _median([q.price for q in fresh])
    accepted = [q for q in fresh if within(centre, q)]
    if not accepted and reference is not None and reference > 0:
        centre = reference
        accepted = [q for q in fresh if within(centre, q)]
    for quote in fresh:
        if quote not in accepted:
            rejected[quote.source] = QuoteRejected(
                ReasonCode.OUTLIER, f"outlier: {quote.price / centre - 1:+.1%} from the median"
            )
    return Selection(accepted=accepted, rejected=rejected)


def breakdown(
    quotes: Sequence[Quote],
    selection: Selection,
    unusable: Mapping[str, QuoteRejected],
    converted: Mapping[str, Converted] | None = None,
) -> list[dict[str, object]]:
    """Each source's part in a price, by name: its quote and whether it was used, or why not
    (``unusable``: sources that gave no valid quote at all, with the reason). A USD price's
    sources are markets (``exchange:pair``): ``converted`` adds each one's pair, raw price and
    the rate it was converted at."""
    used = {q.source for q in selection.accepted}
    entries: list[dict[str, object]] = []
    for quote in quotes:
        entry: dict[str, object] = {
            "exchange": quote.source,
            "accepted": quote.source in used,
            "price": quote.price,
            "volume": quote.volume,
            "timestamp": quote.timestamp,
        }
        if not quote.venue_time:
            entry["timestamp_from"] = "received"
        if quote.source in selection.rejected:
            why = selection.rejected[quote.source]
            entry["reason"] = why.detail
            entry["reason_code"] = why.code
        entries.append(entry)
    entries.extend(
        {"exchange": source, "accepted": False, "reason": why.detail, "reason_code": why.code}
        for source, why in unusable.items()
    )
    if converted:
        for entry in entries:
            market = converted.get(str(entry["exchange"]))
            if market is not None:
                entry["exchange"] = market.exchange
                entry.update(market.fields())
                if market.price is not None:
                    entry.setdefault("price", market.price)
    return sorted(entries, key=lambda entry: (str(entry["exchange"]), str(entry.get("pair", ""))))
