"""symbols.csv, its generator, and how symbols from the wire are resolved."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from aggserver.domain.symbols import Pair, SymbolSet, load_symbols, parse_pairs, parse_symbols
from aggserver.errors import ConfigError, Delisted, InvalidSymbol, UnknownSymbol
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


def test_a_usd_price_is_a_symbol() -> None:
    symbols = SymbolSet(("btcusdt", "btc-usd"))
    assert symbols.resolve("BTC-USD") == "btc-usd"
    with pytest.raises(UnknownSymbol):
        symbols.resolve("eth-usd")
    with pytest.raises(InvalidSymbol):
        symbols.resolve("btc-eur")


def test_a_replaced_symbol_is_delisted_until_listed_again() -> None:
    symbols = SymbolSet(("btcusdt", "ethusdt"))
    added, removed = symbols.replace(("btcusdt", "solusdt"), {})
    assert (added, removed) == (["solusdt"], ["ethusdt"])
    assert symbols.version == 1
    assert "ethusdt" not in symbols
    assert symbols.readable("ethusdt")
    with pytest.raises(Delisted):
        symbols.resolve("ethusdt")
    symbols.replace(("btcusdt", "ethusdt"), {})
    assert symbols.resolve("ethusdt") == "ethusdt"
    assert symbols.delisted == {"solusdt"}
    unchanged = symbols.version
    symbols.replace(("btcusdt", "ethusdt"), {})
    assert symbols.version == unchanged
    symbols.replace((), {}, delists=False)
    assert symbols.delisted == {"solusdt"}
    assert not symbols.readable("btcusdt")


def test_a_frozen_universe_file_names_base_quote_and_venues() -> None:
    text = "symbol,base,quote,venues\nbtcusd,btc,usd,kraken coinbase\nethbtc,eth,btc,\n"
    assert parse_symbols(text) == ("btcusd", "ethbtc")
    assert parse_pairs(text) == {
        "btcusd": Pair("btcusd", "btc", "usd", ("kraken", "coinbase")),
        "ethbtc": Pair("ethbtc", "eth", "btc", ()),
    }
    assert parse_pairs("symbol\nbtcusdt\n") == {}
    with pytest.raises(ConfigError, match="line 2"):
        parse_pairs("symbol,base,quote\nbtcusd,,usd\n")


def test_a_pairs_shard_is_chosen_by_its_base() -> None:
    symbols = SymbolSet(("btc-usd", "btcusd", "xyz"), {"btcusd": Pair("btcusd", "btc", "usd")})
    assert [symbols.shard_key(s) for s in symbols] == ["btc", "btc", "xyz"]
