"""USD prices across quote currencies: which markets feed each ``{base}-usd`` price, and how a
market's quote becomes a USD quote through a measured rate. Pure: no I/O here.

The rule that keeps rates honest: a rate currency (UNIVERSE_QUOTES after ``usd``, in order) is
priced only from markets quoted in USD or in a currency earlier in that order, so ``usdt-usd``
comes from USDT/USD (and USD/USDT inverted), ``btc-usd`` may use BTC/USDT through it, and no
rate is ever derived through the asset it converts. Every other base uses every market whose
quote currency has a rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.domain.symbols import USD_SUFFIX, Pair, usd_name
from aggserver.domain.universe import USD

__all__ = [
    "Conversion",
    "ConversionPlan",
    "Converted",
    "Leg",
    "Rate",
    "convert",
    "plan_conversions",
    "unquoted",
]


@dataclass(frozen=True, slots=True)
class Leg:
    """One market feeding a USD price: the pair, the currency its price is converted from, and
    whether it is the USD price's asset quoted against that currency (USD/X: ``inverted``)."""

    pair: str
    currency: str
    inverted: bool = False


@dataclass(frozen=True, slots=True)
class Rate:
    """A currency's price in USD, when it was measured (unix seconds), whether it was assumed
    (QUOTE_PEGS) rather than measured, and every asset it was derived through (itself too)."""

    currency: str
    price: float
    timestamp: float
    assumed: bool = False
    via: frozenset[str] = frozenset()


USD_RATE = Rate(USD, 1.0, float("inf"), via=frozenset({USD}))


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """The legs of each USD price, the order to compute them in (rates before the prices that
    use them), and which USD prices each pair or rate feeds."""

    legs: Mapping[str, tuple[Leg, ...]]
    order: tuple[str, ...]
    rate_currencies: tuple[str, ...]
    feeds: Mapping[str, frozenset[str]]

    @property
    def usd_prices(self) -> dict[str, str]:
        """Each base asset that has a USD price, with that price's name."""
        return {name[: -len(USD_SUFFIX)]: name for name in self.legs}

    def dependents(self, changed: Iterable[str]) -> list[str]:
        """The USD prices to compute again when ``changed`` pairs moved, in computing order: those
        the pairs feed, and those fed by any rate among them, and so on."""
        due: set[str] = set()
        pending = list(changed)
        while pending:
            for asset in self.feeds.get(pending.pop(), ()):
                if asset not in due:
                    due.add(asset)
                    pending.append(asset)
        return [asset for asset in self.order if asset in due]


def plan_conversions(
    pairs: Iterable[Pair], rate_currencies: Sequence[str], pegs: Collection[str] = ()
) -> ConversionPlan:
    """The plan for ``pairs`` with ``rate_currencies`` (in their order of trust). A currency
    with no market that prices it (and no peg in ``pegs``) converts nothing, so the markets
    quoted in it are left out and a base with no other market gets no USD price at all."""
    legs = _measurable(_all_legs(pairs, rate_currencies), rate_currencies, pegs)
    rates = [usd_name(c) for c in rate_currencies if usd_name(c) in legs]
    order = (*rates, *sorted(a for a in legs if a not in rates))
    feeds: dict[str, set[str]] = defaultdict(set)
    for asset, asset_legs in legs.items():
        for leg in asset_legs:
            feeds[leg.pair].add(asset)
            if leg.currency != USD:
                feeds[usd_name(leg.currency)].add(asset)
    return ConversionPlan(
        legs={asset: tuple(ls) for asset, ls in legs.items()},
        order=order,
        rate_currencies=tuple(rate_currencies),
        feeds={name: frozenset(assets) for name, assets in feeds.items()},
    )


def _all_legs(pairs: Iterable[Pair], rate_currencies: Sequence[str]) -> dict[str, list[Leg]]:
    """Every market that may feed a USD price under the rule (see the module's docstring)."""
    rank = {USD: -1, **{c: i for i, c in enumerate(rate_currencies)}}
    legs: dict[str, list[Leg]] = defaultdict(list)
    for pair in pairs:
        base, quote = pair.base, pair.quote
        if base == quote:
            continue
        if quote in rank and base != USD and (base not in rank or rank[quote] < rank[base]):
            legs[usd_name(base)].append(Leg(pair.symbol, quote))
        if base in rank and quote in rank and rank[base] < rank[quote]:
            legs[usd_name(quote)].append(Leg(pair.symbol, base, inverted=True))  # X's rate from USD/X
    return legs


def _measurable(
    legs: dict[str, list[Leg]], rate_currencies: Sequence[str], pegs: Collection[str]
) -> dict[str, list[Leg]]:
    """``legs`` without those quoted in a currency that nothing prices, in the rates' order."""
    reachable = {USD}
    for currency in rate_currencies:
        name = usd_name(currency)
        kept = [leg for leg in legs.get(name, ()) if leg.currency in reachable]
        if kept or currency in pegs:
            reachable.add(currency)
    kept_legs = {asset: [leg for leg in ls if leg.currency in reachable] for asset, ls in legs.items()}
    return {asset: ls for asset, ls in kept_legs.items() if ls}


@dataclass(frozen=True, slots=True, kw_only=True)
class Converted:
    """One market's part in a USD price, as ``detail=sources`` shows it."""

    exchange: str
    pair: str
    currency: str
    # None for a market that gave no valid quote (its reason says why).
    raw_price: float | None
    rate: float | None
    rate_age: float | None
    rate_assumed: bool
    price: float | None

    def fields(self) -> dict[str, object]:
        entry: dict[str, object] = {"pair": self.pair, "quote_currency": self.currency}
        if self.raw_price is not None:
            entry["raw_price"] = self.raw_price
        entry["rate"] = self.rate
        entry["rate_age"] = self.rate_age
        if self.rate_assumed:
            entry["rate_assumed"] = True
        return entry


@dataclass(slots=True)
class Conversion:
    """A USD price's quotes: one per (exchange, pair) that has a rate, sourced ``exchange:pair``;
    why the others count for nothing; and each market's conversion for ``detail=sources``."""

    quotes: list[Quote] = field(default_factory=list)
    rejected: dict[str, QuoteRejected] = field(default_factory=dict)
    converted: dict[str, Converted] = field(default_factory=dict)
    # Every asset the rates used were derived through (the rule says the price's own is not).
    via: frozenset[str] = frozenset()


def convert(
    asset: str,
    legs: Sequence[Leg],
    quotes: Mapping[str, Sequence[Quote]],
    rates: Mapping[str, Rate],
    *,
    now: float,
    max_rate_age: float,
) -> Conversion:
    """``asset``'s USD quotes from the latest quotes of its legs' pairs (by pair), each converted
    through its currency's rate; a leg whose rate is missing or older than ``max_rate_age``
    seconds is rejected (``no_rate``, ``stale_rate``). Weights stay base volume: an inverted
    leg's volume is the quote volume of its pair."""
    result = Conversion()
    via: set[str] = set()
    for leg in legs:
        rate = USD_RATE if leg.currency == USD else rates.get(leg.currency)
        for quote in quotes.get(leg.pair, ()):
            source = f"{quote.source}:{leg.pair}"
            reason = _unusable(rate, now=now, max_age=max_rate_age)
            usable = rate if reason is None else None
            price = _in_usd(quote.price, usable, leg.inverted)
            result.converted[source] = Converted(
                exchange=quote.source,
                pair=leg.pair,
                currency=leg.currency,
                raw_price=quote.price,
                rate=rate.price if rate is not None else None,
                rate_age=None
                if rate is None or rate is USD_RATE
                else round(max(0.0, now - rate.timestamp), 3),
                rate_assumed=rate is not None and rate.assumed,
                price=price,
            )
            if usable is None or price is None:
                result.rejected[source] = reason or QuoteRejected(ReasonCode.NO_RATE, "no usable rate")
                continue
            via |= usable.via
            result.quotes.append(
                Quote(
                    source=source,
                    symbol=asset,
                    price=price,
                    volume=quote.volume * quote.price if leg.inverted else quote.volume,
                    timestamp=quote.timestamp,
                    venue_time=quote.venue_time,
                    timestamp_ms=quote.timestamp_ms,
                )
            )
    result.via = frozenset(via)
    return result


def unquoted(exchange: str, leg: Leg, rates: Mapping[str, Rate], now: float) -> Converted:
    """What ``detail=sources`` shows of a market ``exchange`` gave no valid quote of."""
    return _converted(
        exchange, leg, None, USD_RATE if leg.currency == USD else rates.get(leg.currency), now, None
    )


def _converted(
    exchange: str, leg: Leg, raw_price: float | None, rate: Rate | None, now: float, price: float | None
) -> Converted:
    return Converted(
        exchange=exchange,
        pair=leg.pair,
        currency=leg.currency,
        raw_price=raw_price,
        rate=rate.price if rate is not None else None,
        rate_age=None if rate is None or rate is USD_RATE else round(max(0.0, now - rate.timestamp), 3),
        rate_assumed=rate is not None and rate.assumed,
        price=price,
    )


def _unusable(rate: Rate | None, *, now: float, max_age: float) -> QuoteRejected | None:
    if rate is None:
        return QuoteRejected(ReasonCode.NO_RATE, "no USD rate of its quote currency")
    age = now - rate.timestamp
    if age > max_age:
        return QuoteRejected(ReasonCode.STALE_RATE, f"the {rate.currency.upper()} rate is {age:.0f} s old")
    return None


def _in_usd(price: float, rate: Rate | None, inverted: bool) -> float | None:
    if rate is None or price <= 0:
        return None
    return rate.price / price if inverted else price * rate.price
