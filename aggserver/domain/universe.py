"""Which markets are priced: the venues' listings filtered into one universe, in rank order.

Pure: the listings come in as pairs per venue (``exchanges/registry.py`` loads them), the
universe goes out as symbols for ``SymbolSet.replace`` and rows for ``aggserver symbols``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from aggserver.domain.symbols import Pair

__all__ = ["USD", "csv_rows", "ranked", "venue_universe"]

USD = "usd"


def venue_universe(
    listings: Mapping[str, Iterable[Pair]], *, quotes: Sequence[str], min_venues: int
) -> dict[str, Pair]:
    """Every pair quoted in one of ``quotes`` that at least ``min_venues`` venues list, with the
    venues that list it (in the order ``listings`` gives them)."""
    wanted = frozenset(quotes)
    listed_by: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Pair] = {}
    for venue, pairs in listings.items():
        for pair in pairs:
            if pair.quote not in wanted or pair.base == pair.quote:
                continue
            first.setdefault(pair.symbol, pair)
            if venue not in listed_by[pair.symbol]:
                listed_by[pair.symbol].append(venue)
    return {
        symbol: Pair(symbol, pair.base, pair.quote, tuple(listed_by[symbol]))
        for symbol, pair in first.items()
        if len(listed_by[symbol]) >= min_venues
    }


def ranked(
    pairs: Mapping[str, Pair],
    usd_prices: Mapping[str, str],
    hint: Mapping[str, int],
    rates: Sequence[str] = (),
) -> tuple[str, ...]:
    """The universe in rank order, for the tiers (the first are refreshed most often): the
    ``rates`` currencies first, in their order (every USD price converts through them, so their
    markets must be the freshest), then base assets by how many listings their markets have
    (ties by ``hint``, a symbol's rank in the symbols file, which is by market size); each base
    as its USD price (``usd_prices``: base -> name) followed by its pairs by how many venues list
    them. The USD price comes first: it is what most people ask for."""
    unranked = len(hint)
    by_base: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs.values():
        by_base[pair.base].append(pair)
    for base in usd_prices:
        by_base.setdefault(base, [])  # a rate priced only through USD/X markets

    def pair_rank(pair: Pair) -> tuple[int, int, str]:
        return (-len(pair.venues), hint.get(pair.symbol, unranked), pair.symbol)

    priority = {currency: i for i, currency in enumerate(rates)}

    def base_rank(base: str) -> tuple[int, int, int, str]:
        markets = by_base[base]
        first = min((hint.get(p.symbol, unranked) for p in markets), default=unranked)
        return (priority.get(base, len(priority)), -sum(max(1, len(p.venues)) for p in markets), first, base)

    ordered: list[str] = []
    for base in sorted(by_base, key=base_rank):
        if base in usd_prices:
            ordered.append(usd_prices[base])
        ordered.extend(p.symbol for p in sorted(by_base[base], key=pair_rank))
    return tuple(ordered)


def csv_rows(pairs: Mapping[str, Pair], order: Sequence[str]) -> list[str]:
    """``symbol,base,quote,venues`` lines (venues space-separated) of the pairs in ``order``, as
    ``aggserver symbols`` prints them and ``SYMBOLS_FILE`` reads them back."""
    rows = ["symbol,base,quote,venues"]
    rows.extend(
        f"{p.symbol},{p.base},{p.quote},{' '.join(p.venues)}" for p in (pairs[s] for s in order if s in pairs)
    )
    return rows
