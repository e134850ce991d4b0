"""symbols.csv, its generator, and how symbols from the wire are resolved."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from aggserver.domain.symbols import SymbolSet, load_symbols, parse_symbols
from aggserver.errors import ConfigError, InvalidSymbol, UnknownSymbol
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from tests.paths import REPO_ROOT


def test_symbols_file_has_ten_thousand_unique_lowercase_symbols() -> None:
    lines = (REPO_ROOT / "symbols.csv").read_text().splitlines()
    assert lines[0] == "symbol"
    symbols = lines[1:]
    assert len(symbols) == 10_000
    assert len(set(symbols)) == 10_000
    assert all(s == s.lower() for s in symbols)
    assert symbols[:5] == ["btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt"]
    assert {"adausdt", "dogeusdt", "linkusdt"} <= set(symbols[:30])


def test_generator_reproduces_the_committed_file() -> None:
    spec = importlib.util.spec_from_file_location("make_symbols", REPO_ROOT / "scripts" / "make_symbols.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = "symbol\n" + "\n".join(module.generate()) + "\n"
    assert (REPO_ROOT / "symbols.csv").read_text() == expected


def test_package_carries_the_same_list() -> None:
    assert DEFAULT_SYMBOLS_FILE.read_bytes() == (REPO_ROOT / "symbols.csv").read_bytes()
    assert len(load_symbols(DEFAULT_SYMBOLS_FILE)) == 10_000


def test_parse_lowercases_and_drops_duplicates() -> None:
    assert parse_symbols("symbol\nBTCUSDT\nbtcusdt\n\nethusdt\n") == ("btcusdt", "ethusdt")


@pytest.mark.parametrize(
    "text", ["", "sym\nbtcusdt\n", "symbol\n", "symbol\nbtc-usdt\n", "symbol\n" + "a" * 40 + "\n"]
)
def test_parse_rejects_malformed_files(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_symbols(text)


def test_load_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_symbols(tmp_path / "missing.csv")


def test_resolve_distinguishes_malformed_from_unknown() -> None:
    symbols = SymbolSet(("btcusdt", "ethusdt"))
    assert symbols.resolve("BtcUsdt") == "btcusdt"
    with pytest.raises(UnknownSymbol):
        symbols.resolve("dogeusdt")
    for raw in ("btc-usdt", "b", "x" * 33, "btc usdt", "bt\u00e7usdt", ""):
        with pytest.raises(InvalidSymbol):
            symbols.resolve(raw)
