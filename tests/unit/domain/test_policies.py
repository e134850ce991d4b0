"""Pure policies: outlier selection, the circuit breaker, tiers and popularity, the history gate."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aggserver.domain.aggregate import QuotePolicy, select_quotes, volume_weighted_price
from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.domain.tiers import HistoryGate, Popularity, TierMap
from aggserver.exchanges.breaker import BreakerState, CircuitBreaker
from aggserver.settings import Settings

NOW = 1_800_000_000
POLICY = QuotePolicy(outlier_threshold=0.05)


def quote(source: str, price: float, volume: float = 1.0, timestamp: int = NOW) -> Quote:
    return Quote(source=source, symbol="btcusdt", price=price, volume=volume, timestamp=timestamp)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_x_outlier_among_three_is_dropped() -> None:
    quotes = [quote("a", 100.0, 1.0), quote("b", 101.0, 3.0), quote("c", 1000.0, 50.0)]
    selection = select_quotes(quotes, now=NOW, policy=POLICY)
    assert [q.source for q in selection.accepted] == ["a", "b"]
    assert selection.rejected["c"].code is ReasonCode.OUTLIER
    assert selection.rejected["c"].detail == "outlier: +890.1% from the median"
    assert volume_weighted_price(selection.accepted) == pytest.approx(100.75)


def test_old_and_future_quotes_are_dropped() -> None:
    quotes = [
        quote("a", 100.0, timestamp=NOW - 500),
        quote("b", 100.0, timestamp=NOW + 60),
        quote("c", 100.0),
    ]
    selection = select_quotes(quotes, now=NOW, policy=POLICY)
    assert [q.source for q in selection.accepted] == ["c"]
    assert selection.rejected["a"] == QuoteRejected(ReasonCode.STALE_QUOTE, "quote is 500 s old")
    assert selection.rejected["b"] == QuoteRejected(
        ReasonCode.FUTURE_QUOTE, "quote timestamp is in the future"
    )


def test_two_disagreeing_sources_fall_back_to_the_last_good_price() -> None:
    quotes = [quote("a", 100.0), quote("b", 130.0)]
    assert select_quotes(quotes, now=NOW, policy=POLICY).accepted == []
    kept = select_quotes(quotes, now=NOW, policy=POLICY, reference=101.0).accepted
    assert [q.source for q in kept] == ["a"]


def test_distrusted_source_must_come_well_inside_the_threshold() -> None:
    quotes = [quote("a", 100.0), quote("b", 100.0), quote("c", 104.0)]
    assert len(select_quotes(quotes, now=NOW, policy=POLICY).accepted) == 3
    assert len(select_quotes(quotes, now=NOW, policy=POLICY, distrusted={"c"}).accepted) == 2
    closer = [quote("a", 100.0), quote("b", 100.0), quote("c", 102.0)]
    assert len(select_quotes(closer, now=NOW, policy=POLICY, distrusted={"c"}).accepted) == 3


sane = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(sane, st.floats(min_value=-0.01, max_value=0.01), st.floats(min_value=3, max_value=1e6), st.booleans())
def test_a_single_wild_outlier_among_three_is_ignored(
    base: float, spread: float, factor: float, low: bool
) -> None:
    wild = base / factor if low else base * factor
    quotes = [quote("a", base, 2.0), quote("b", base * (1 + spread), 1.0), quote("c", wild, 1e9)]
    selection = select_quotes(quotes, now=NOW, policy=POLICY)
    assert {q.source for q in selection.accepted} == {"a", "b"}
    price = volume_weighted_price(selection.accepted)
    assert min(base, base * (1 + spread)) <= price <= max(base, base * (1 + spread))


@given(st.lists(sane, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_selection_does_not_depend_on_quote_order(prices: list[float], rnd: object) -> None:
    quotes = [quote(f"s{i}", p) for i, p in enumerate(prices)]
    shuffled = list(quotes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = select_quotes(quotes, now=NOW, policy=POLICY)
    second = select_quotes(shuffled, now=NOW, policy=POLICY)
    assume(first.accepted)
    assert {q.source for q in first.accepted} == {q.source for q in second.accepted}


def test_breaker_opens_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker("x", failure_threshold=3, reset_seconds=5, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert _state(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.failure()
    assert _state(breaker) is BreakerState.OPEN
    clock.now += 5
    assert breaker.allow()
    breaker.success()
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_breaker_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("x", failure_threshold=2, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert _state(breaker) is BreakerState.CLOSED


def test_lost_probe_does_not_keep_the_circuit_shut() -> None:
    clock = Clock()
    breaker = CircuitBreaker("x", failure_threshold=1, reset_seconds=5, clock=clock)
    breaker.failure()
    clock.now += 5
    assert breaker.allow()  # a probe that never reports back
    clock.now += 5
    assert breaker.allow()


def test_tiers_by_rank_with_ttl_longer_than_interval() -> None:
    symbols = [f"s{i:03d}" for i in range(300)]
    tiers = TierMap(symbols, Settings.from_env({}))
    assert [tiers.of(s).name for s in ("s000", "s019", "s020", "s199", "s200")] == [
        "hot",
        "hot",
        "medium",
        "medium",
        "cold",
    ]
    assert len(tiers.members(tiers.hot)) == 20
    assert len(tiers.members(tiers.medium)) == 180
    for tier in (tiers.hot, tiers.medium, tiers.cold):
        assert tier.ttl > tier.interval


def test_busy_cold_asset_is_promoted_then_demoted_when_idle() -> None:
    clock = Clock()
    symbols = [f"s{i:03d}" for i in range(300)]
    tiers = TierMap(symbols, Settings.from_env({}))
    popularity = Popularity(promote_rate=1.0, max_promoted=5, demote_after_seconds=30, clock=clock)
    promoted: list[str] = []
    for _ in range(3):
        for _ in range(20):
            popularity.hit("s250")
        popularity.hit("s260")
        clock.now += 1
        promoted += popularity.update(tiers)
    assert promoted == ["s250"]
    assert tiers.of("s250") is tiers.hot
    assert tiers.of("s260") is tiers.cold
    assert "s250" in tiers.members(tiers.hot)
    assert "s250" not in tiers.members(tiers.cold)
    for _ in range(60):
        clock.now += 1
        popularity.update(tiers)
    assert tiers.of("s250") is tiers.cold


def test_history_gate_records_on_deviation_or_heartbeat() -> None:
    gate = HistoryGate(deviation=0.01, heartbeat_seconds=60)
    assert gate.should_record("a", 100.0, 0)
    assert not gate.should_record("a", 100.5, 10)
    assert gate.should_record("a", 101.5, 20)
    assert not gate.should_record("a", 101.6, 30)
    assert gate.should_record("a", 101.6, 81)
    assert HistoryGate(deviation=0, heartbeat_seconds=60).should_record("a", 1.0, 0)


def _state(breaker: CircuitBreaker) -> BreakerState:
    # A call, so that mypy does not narrow the state across the calls that change it.
    return breaker.state
