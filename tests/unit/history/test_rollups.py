"""Candle rollups as pure rules: block items, settling, merging, naming, and rollups equal to candles
from the raw records."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.candles import INTERVALS, LEVELS, Candle, build_candles, merge_candles
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import (
    PASS_SECONDS,
    RECORD_LAG_SECONDS,
    ROLLUP_LEVELS,
    block_start,
    decode_block,
    encode_block,
    rollup_table,
    settled_before,
)
from tests.rollup_records import BASE, DAY, arrivals, stored


def chain(records: list[HistoryRecord], name: str) -> list[Candle]:
    """Candles of ``name`` as the rollups build them: each level merged from the one below."""
    below = LEVELS[name]
    if below is None:
        return build_candles(records, INTERVALS[name])
    return merge_candles(chain(records, below), INTERVALS[name])


@given(arrivals, st.randoms(use_true_random=False))
def test_rollups_equal_candles_from_the_raw_records(records: list[HistoryRecord], rnd: random.Random) -> None:
    # Duplicates appended, then everything arrives in any order.
    rnd.shuffle(records)
    table = stored(records)
    for name, interval in INTERVALS.items():
        assert chain(table, name) == build_candles(table, interval), name


@given(arrivals, st.sampled_from(list(INTERVALS)))
def test_merging_is_order_free_and_adds_up(records: list[HistoryRecord], name: str) -> None:
    table = stored(records)
    candles = chain(table, name)
    assert merge_candles(list(reversed(candles)), INTERVALS[name]) == candles
    assert sum(c.samples for c in candles) == len(table)


@given(arrivals)
def test_a_block_item_holds_its_candles_exactly(records: list[HistoryRecord]) -> None:
    for name, interval in INTERVALS.items():
        for candle in build_candles(stored(records), interval):
            start = block_start(name, candle.start)
            assert start <= candle.start < start + interval * ROLLUP_LEVELS[name].block
            assert decode_block(encode_block("btcusdt", name, start, [candle]), interval) == [candle]


def test_a_candle_is_settled_once_every_level_below_it_has_had_its_delay() -> None:
    now = BASE + 10 * DAY + 12_345
    lag = RECORD_LAG_SECONDS
    for name, interval in INTERVALS.items():  # shortest first: each level waits for those below
        lag += ROLLUP_LEVELS[name].delay + PASS_SECONDS
        settled = settled_before(name, now)
        assert settled % interval == 0
        # The last settled candle ended at least the lag ago; the next one did not.
        assert settled <= now - lag < settled + interval


def test_rollup_table_is_named_after_the_prices_table() -> None:
    assert rollup_table("prices") == "prices-candles"
