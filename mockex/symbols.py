"""The symbols a mock exchange quotes, read from a CSV with a ``symbol`` header.

mockex is a separate program from aggserver and reads the file itself: it must not import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mockex.assets import NAMED_ASSETS

__all__ = [
    "DEFAULT_SYMBOLS_FILE",
    "QUOTE_CURRENCIES",
    "SymbolList",
    "SymbolsError",
    "checked_symbols",
    "load_symbols",
    "split_symbol",
]

_ROOT = Path(__file__).resolve().parent.parent
# The project's list; an installed copy finds the one packaged beside aggserver (a file, not an import).
DEFAULT_SYMBOLS_FILE = next(
    (p for p in (_ROOT / "symbols.csv", _ROOT / "aggserver" / "symbols.csv") if p.is_file()),
    _ROOT / "symbols.csv",
)
_SYMBOL = re.compile(r"[a-z0-9]{2,32}")
# Longest first, so ``usdt`` wins over a shorter suffix.
QUOTE_CURRENCIES = ("usdt", "usdc", "busd", "usd", "eur", "btc", "eth")


class SymbolsError(ValueError):
    """The symbols file cannot be used."""


class SymbolList:
    """Symbols in file order, with fast membership."""

    __slots__ = ("_known", "ordered")

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.ordered = symbols
        self._known = frozenset(symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._known

    def __len__(self) -> int:
        return len(self.ordered)

    def first(self, count: int) -> SymbolList:
        return SymbolList(self.ordered[:count])

    def union(self, symbols: Iterable[str]) -> SymbolList:
        """These symbols, then those of ``symbols`` not among them (itself when there are none)."""
        extra = tuple(dict.fromkeys(s for s in symbols if s not in self._known))
        return SymbolList(self.ordered + extra) if extra else self


def load_symbols(path: Path) -> SymbolList:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SymbolsError(f"cannot read symbols file {path}: {exc}") from None
    rows = [line.split(",", 1)[0].strip().lower() for line in lines]
    if not rows or rows[0] != "symbol":
        raise SymbolsError(f"{path} must start with a 'symbol' header")
    symbols = tuple(dict.fromkeys(s for s in rows[1:] if _SYMBOL.fullmatch(s)))
    if not symbols:
        raise SymbolsError(f"{path} lists no symbols")
    return SymbolList(symbols)


def checked_symbols(names: Iterable[object]) -> tuple[str, ...]:
    """Symbol names lowercased, in order, without repeats; SymbolsError names the first bad one."""
    symbols: dict[str, None] = {}
    for name in names:
        symbol = name.strip().lower() if isinstance(name, str) else None
        if symbol is None or not _SYMBOL.fullmatch(symbol):
            raise SymbolsError(f"{name!r} is not a symbol (2 to 32 letters and digits)")
        symbols[symbol] = None
    return tuple(symbols)


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) in upper case: ``btcusdt`` -> (``BTC``, ``USDT``), ``usdtusd`` -> (``USDT``,
    ``USD``). Where two quote currencies fit, the one that leaves a named base wins: ``bnbusd`` is
    BNB/USD, not BN/BUSD."""
    splits = [
        (symbol[: -len(quote)], quote)
        for quote in QUOTE_CURRENCIES
        if symbol.endswith(quote) and len(symbol) > len(quote)
    ]
    if not splits:
        return symbol[:-3].upper(), symbol[-3:].upper()
    base, quote = next((split for split in splits if split[0] in NAMED_ASSETS), splits[0])
    return base.upper(), quote.upper()
