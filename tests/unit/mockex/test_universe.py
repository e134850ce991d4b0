"""Realistic universes: about SIZE pairs a venue, every quote currency, venue flavours, overlap."""

from __future__ import annotations

import collections
import itertools
import os
import subprocess
import sys

import pytest

from mockex.assets import NAMED_BASES
from mockex.symbols import split_symbol
from mockex.universe import DEFAULT_SIZE, MAX_SIZE, QUOTES, VENUES, realistic_markets, synthetic_bases

UNIVERSES = {venue: realistic_markets(venue, DEFAULT_SIZE) for venue in VENUES}


def quote_share(venue: str, quotes: set[str]) -> float:
    pairs = UNIVERSES[venue]
    return sum(split_symbol(s)[1].lower() in quotes for s in pairs) / len(pairs)


@pytest.mark.parametrize("venue", VENUES)
def test_a_venue_lists_size_pairs_of_real_coins_and_synthetic_ones_in_every_quote(venue: str) -> None:
    pairs = UNIVERSES[venue]
    assert len(pairs) == len(set(pairs)) == DEFAULT_SIZE
    splits = [tuple(code.lower() for code in split_symbol(s)) for s in pairs]
    assert all(base + quote == s for (base, quote), s in zip(splits, pairs, strict=True))
    assert {quote for _, quote in splits} == set(QUOTES)
    bases = {base for base, _ in splits}
    assert set(NAMED_BASES) <= bases  # the real coins are listed everywhere
    synthetic = bases - set(NAMED_BASES) - set(QUOTES)
    assert len(synthetic) > 300
    assert all(code.isalpha() and 3 <= len(code) <= 5 for code in synthetic)
    assert {"btcusd", "btcusdt", "btcusdc", "btceur", "ethbtc", "ethusd", "etheur"} <= set(pairs)
    assert len(realistic_markets(venue, 200)) == 200


def test_venues_have_their_flavour_and_their_currency_markets() -> None:
    for venue in ("coinbase", "kraken"):
        assert quote_share(venue, {"usd", "eur"}) > 0.45
        assert {"usdtusd", "usdcusd"} <= set(UNIVERSES[venue])
    for venue in ("binance", "okx", "bybit"):
        assert quote_share(venue, {"usdt", "usdc", "btc", "eth"}) > 0.9
        assert quote_share(venue, {"usd"}) < 0.03
        assert "usdcusdt" in UNIVERSES[venue]
        assert "usdtusd" not in UNIVERSES[venue]
    assert {"eurusdt", "eurusdc"} <= set(UNIVERSES["binance"])
    assert "eurusd" in UNIVERSES["kraken"]


def test_about_60_percent_of_pairs_overlap_and_a_few_are_one_venues_alone() -> None:
    listings = {venue: set(pairs) for venue, pairs in UNIVERSES.items()}
    shared = [len(listings[a] & listings[b]) / DEFAULT_SIZE for a, b in itertools.combinations(VENUES, 2)]
    assert 0.55 < sum(shared) / len(shared) < 0.65
    venues_of = collections.Counter(s for pairs in listings.values() for s in pairs)
    assert 0.55 < sum(n >= 2 for n in venues_of.values()) / len(venues_of) < 0.75
    for venue, pairs in listings.items():
        alone = sum(venues_of[s] == 1 for s in pairs)
        assert 0.05 * DEFAULT_SIZE < alone < 0.25 * DEFAULT_SIZE, venue
    assert sum(n == 5 for n in venues_of.values()) > 300  # the popular pairs are everywhere


def test_universes_are_the_same_in_every_process() -> None:
    code = "from mockex.universe import realistic_markets as r; print(','.join(r('okx', 300)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert tuple(out.stdout.strip().split(",")) == realistic_markets("okx", 300)
    assert synthetic_bases(5) == synthetic_bases(50)[:5]


@pytest.mark.parametrize(("venue", "size"), [("okx", 0), ("okx", MAX_SIZE + 1), ("nosuch", 10)])
def test_universe_arguments_are_checked(venue: str, size: int) -> None:
    with pytest.raises(ValueError, match=r"venue|size"):
        realistic_markets(venue, size)
