"""The asset universe as the API sees it: symbols.csv parsed, symbols from the wire normalised,
and the set of symbols that can change at run time as venues list and delist markets."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aggserver.errors import ConfigError, Delisted, InvalidSymbol, UnknownSymbol

__all__ = [
    "SYMBOL_PATTERN",
    "USD_SUFFIX",
    "Pair",
    "SymbolSet",
    "load_symbols",
    "parse_pairs",
    "parse_symbols",
    "usd_name",
]

# A pair is lowercase letters and digits, as exchanges spell spot pairs (``btcusdt``); an asset's
# price in US dollars is its base code with ``-usd`` (``btc-usd``). Checked only on the slow path.
SYMBOL_PATTERN = re.compile(r"[a-z0-9]{2,32}(?:-usd)?")
USD_SUFFIX = "-usd"
_CODE = re.compile(r"[a-z0-9]{1,16}")


@dataclass(frozen=True, slots=True)
class Pair:
    """A spot market by our name (``btcusdt``), its base and quote codes in lower case, and the
    venues that list it (empty where only a file says it exists)."""

    symbol: str
    base: str
    quote: str
    venues: tuple[str, ...] = ()


def usd_name(base: str) -> str:
    """The name of ``base``'s price in US dollars: ``btc`` -> ``btc-usd``."""
    return f"{base}{USD_SUFFIX}"


def _rows(text: str) -> list[list[str]]:
    rows = [[cell.strip().lower() for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    if not rows or rows[0][0] != "symbol":
        raise ConfigError("symbols file must start with a 'symbol' header")
    return rows


def parse_symbols(text: str) -> tuple[str, ...]:
    """Symbols from CSV text with a ``symbol`` header, lowercased, in file order, no duplicates."""
    rows = _rows(text)
    symbols: dict[str, None] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not SYMBOL_PATTERN.fullmatch(row[0]):
            raise ConfigError(f"symbols file line {number}: {row[0]!r} is not a valid symbol")
        symbols[row[0]] = None
    if not symbols:
        raise ConfigError("symbols file lists no symbols")
    return tuple(symbols)


def parse_pairs(text: str) -> dict[str, Pair]:
    """The pairs whose base and quote the file names (``symbol,base,quote[,venues]``, as
    ``aggserver symbols`` prints it); empty for a file with the ``symbol`` column alone."""
    rows = _rows(text)
    header = rows[0]
    if len(header) < 3 or header[1:3] != ["base", "quote"]:
        return {}
    pairs: dict[str, Pair] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 3 or not (_CODE.fullmatch(row[1]) and _CODE.fullmatch(row[2])):
            raise ConfigError(f"symbols file line {number}: needs a base and a quote code")
        venues = tuple(v for v in row[3].split(" ") if v) if len(row) > 3 else ()
        pairs[row[0]] = Pair(row[0], row[1], row[2], venues)
    return pairs


def load_symbols(path: Path) -> SymbolSet:
    """Read and parse the symbols file at ``path``; ConfigError if unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read symbols file {path}: {exc}") from None
    return SymbolSet(parse_symbols(text), parse_pairs(text))


class SymbolSet:
    """The symbols priced now, in rank order, with the wire-format checks the API needs.

    It changes only by :meth:`replace` (a venue listing reload): a symbol that leaves is
    remembered as delisted, so its price answers 404 ``delisted`` while its history stays
    readable, until a venue lists it again.
    """

    __slots__ = ("_known", "delisted", "ordered", "pairs", "version")

    def __init__(self, symbols: tuple[str, ...], pairs: Mapping[str, Pair] | None = None) -> None:
        self.ordered = symbols
        self._known = frozenset(symbols)
        # The markets among them whose base and quote are known (the rest are names alone).
        self.pairs: Mapping[str, Pair] = dict(pairs or {})
        self.delisted: frozenset[str] = frozenset()
        # One more with every change, for those who keep something derived from the set.
        self.version = 0

    def __len__(self) -> int:
        return len(self.ordered)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self.ordered)

    def shard_key(self, symbol: str) -> str:
        """What ``symbol``'s refresh shard is chosen by: the base asset where it is known, so a
        base's pairs and its USD price are refreshed in one process; else the symbol."""
        if symbol.endswith(USD_SUFFIX):
            return symbol[: -len(USD_SUFFIX)]
        pair = self.pairs.get(symbol)
        return pair.base if pair is not None else symbol

    def replace(
        self, symbols: tuple[str, ...], pairs: Mapping[str, Pair], *, delists: bool = True
    ) -> tuple[list[str], list[str]]:
        """Price ``symbols`` from now on; returns (added, removed). Without ``delists`` the
        removed ones are forgotten rather than remembered as delisted (the symbols file's
        names when the venues' universe replaces them at start-up)."""
        known = frozenset(symbols)
        added = [s for s in symbols if s not in self._known]
        removed = [s for s in self.ordered if s not in known]
        self.ordered, self._known, self.pairs = symbols, known, dict(pairs)
        self.delisted = (self.delisted | frozenset(removed if delists else ())) - known
        if added or removed:
            self.version += 1
        return added, removed

    def readable(self, symbol: str) -> bool:
        """Whether ``symbol``'s history can be asked for: priced now or delisted."""
        return symbol in self._known or symbol in self.delisted

    def resolve(self, raw: str) -> str:
        """The canonical symbol for a path segment.

        Raises InvalidSymbol when ``raw`` cannot be a symbol, Delisted when it was priced until a
        venue reload removed it, UnknownSymbol when it is well-formed but not listed.
        """
        symbol = raw.lower()
        if symbol in self._known:
            return symbol
        if symbol in self.delisted:
            raise Delisted(symbol)
        if SYMBOL_PATTERN.fullmatch(symbol):
            raise UnknownSymbol(symbol)
        raise InvalidSymbol(raw)
