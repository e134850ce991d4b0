"""The asset universe: parsing symbols.csv and normalising symbols from the wire."""

from __future__ import annotations

import re
from pathlib import Path

from aggserver.errors import ConfigError, InvalidSymbol, UnknownSymbol

__all__ = ["SYMBOL_PATTERN", "SymbolSet", "load_symbols", "parse_symbols"]

# Lowercase letters and digits, as exchanges spell spot pairs; checked only on the slow path.
SYMBOL_PATTERN = re.compile(r"[a-z0-9]{2,32}")


def parse_symbols(text: str) -> tuple[str, ...]:
    """Symbols from CSV text with a ``symbol`` header, lowercased, in file order, no duplicates."""
    lines = [line.strip() for line in text.splitlines()]
    rows = [line.split(",", 1)[0].strip().lower() for line in lines if line]
    if not rows or rows[0] != "symbol":
        raise ConfigError("symbols file must start with a 'symbol' header")
    symbols: dict[str, None] = {}
    for number, symbol in enumerate(rows[1:], start=2):
        if not SYMBOL_PATTERN.fullmatch(symbol):
            raise ConfigError(f"symbols file line {number}: {symbol!r} is not a valid symbol")
        symbols[symbol] = None
    if not symbols:
        raise ConfigError("symbols file lists no symbols")
    return tuple(symbols)


def load_symbols(path: Path) -> SymbolSet:
    """Read and parse the symbols file at ``path``; ConfigError if unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read symbols file {path}: {exc}") from None
    return SymbolSet(parse_symbols(text))


class SymbolSet:
    """An ordered, immutable set of symbols with the wire-format checks the API needs."""

    __slots__ = ("_known", "ordered")

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.ordered = symbols
        self._known = frozenset(symbols)

    def __len__(self) -> int:
        return len(self.ordered)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._known

    def resolve(self, raw: str) -> str:
        """The canonical symbol for a path segment.

        Raises InvalidSymbol when ``raw`` cannot be a symbol, UnknownSymbol when it is
        well-formed but not listed.
        """
        symbol = raw.lower()
        if symbol in self._known:
            return symbol
        if SYMBOL_PATTERN.fullmatch(symbol):
            raise UnknownSymbol(symbol)
        raise InvalidSymbol(raw)
