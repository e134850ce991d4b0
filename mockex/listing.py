"""A venue's listing set at run time (``POST /mock/admin/listing``), as venues add and remove
markets: ``{"listed": N}`` lists the first N symbols the exchange knows, ``{"symbols": [...]}``
exactly those named, which may be pairs it did not know (it quotes them from then on)."""

from __future__ import annotations

from mockex.symbols import SymbolList, SymbolsError, checked_symbols

__all__ = ["MAX_LISTED", "ListingError", "parse_listing"]

MAX_LISTED = 50_000
_FORMS = '{"listed": N} or {"symbols": ["btcusd", ...]}'


class ListingError(ValueError):
    """A listing that cannot be applied."""


def parse_listing(body: object, known: SymbolList) -> SymbolList:
    """The listing a request body asks for, given ``known``: the symbols the exchange knows."""
    if not isinstance(body, dict) or len(body) != 1 or not body.keys() <= {"listed", "symbols"}:
        raise ListingError(f"body must be {_FORMS}")
    if "listed" in body:
        count = body["listed"]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= len(known):
            raise ListingError(f"listed must be a whole number from 1 to {len(known)}")
        return known.first(count)
    names = body["symbols"]
    if not isinstance(names, list) or not 0 < len(names) <= MAX_LISTED:
        raise ListingError(f"symbols must be a list of 1 to {MAX_LISTED} symbols")
    try:
        return SymbolList(checked_symbols(names))
    except SymbolsError as exc:
        raise ListingError(str(exc)) from None
