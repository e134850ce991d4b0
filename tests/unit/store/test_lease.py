"""Sharing out the refresh shards: the plan each instance follows, applied by many instances in
any order, ends with every shard owned once and the shares balanced."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from aggserver.store.lease import lease_key, plan, shard_of

MEMBERS = ["a", "b", "c", "d", "e"]


def settle(holders: list[str | None], alive: list[str], order: list[int]) -> list[str | None]:
    """Instances check in ``order`` (indexes into ``alive``, repeated), each following its plan."""
    holders = list(holders)
    for turn in order:
        me = alive[turn % len(alive)]
        decided = plan(holders, alive, me)
        assert not (decided.take and decided.give)
        for shard in decided.give:
            assert holders[shard] == me
            holders[shard] = None
        for shard in decided.take:
            assert holders[shard] is None
            holders[shard] = me
    return holders


@given(
    shards=st.integers(1, 16),
    alive=st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=5, unique=True),
    start=st.data(),
    order=st.lists(st.integers(0, 4), min_size=0, max_size=30),
)
def test_every_shard_ends_owned_once_with_balanced_shares(
    shards: int, alive: list[str], start: st.DataObject, order: list[int]
) -> None:
    # Any start: shards free, held by live instances, or by dead ones whose leases still run.
    holders = start.draw(
        st.lists(st.one_of(st.none(), st.sampled_from([*MEMBERS, "dead"])), min_size=shards, max_size=shards)
    )
    holders = [None if h not in alive else h for h in holders]  # dead holders' leases expired
    # Whatever happened first, a few rounds of everyone checking in turn settle it.
    settled = settle(settle(holders, alive, order), alive, list(range(len(alive))) * 3)
    assert None not in settled
    counts = Counter(settled)
    shares = [counts[m] for m in alive]
    assert max(shares) - min(shares) <= 1, settled
    # Settled means stable: nobody wants to change anything any more.
    assert settle(settled, alive, list(range(len(alive)))) == settled


def test_a_lone_instance_takes_everything_and_one_shard_is_the_old_single_lease() -> None:
    assert plan([None, None, None], ["a"], "a").take == (0, 1, 2)
    assert plan([None], ["a", "b"], "b").take == (0,)
    assert plan(["a"], ["a", "b"], "b").take == ()
    assert lease_key(0, 1) == "scheduler:lease"
    assert lease_key(3, 4) == "scheduler:lease:3"


def test_a_newcomer_gets_its_share_handed_over() -> None:
    holders: list[str | None] = ["a", "a", "a", "a"]
    assert plan(holders, ["a", "b"], "a").give == (2, 3)
    assert plan([*holders[:2], None, None], ["a", "b"], "a").take == ()  # left for b
    assert plan([*holders[:2], None, None], ["a", "b"], "b").take == (2, 3)


@given(st.from_regex(r"[a-z0-9]{2,32}", fullmatch=True), st.integers(1, 64))
def test_shards_are_stable_and_in_range(asset: str, shards: int) -> None:
    assert 0 <= shard_of(asset, shards) < shards
    assert shard_of(asset, shards) == shard_of(asset, shards)
