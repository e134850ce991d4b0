"""The price view's coherence rules (aggserver/engine/price_view.py) on a clock of the tests' own: what
is kept, replaced, expired or read again, and what streams are offered."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from hypothesis import given
from hypothesis import settings as settings_profile
from hypothesis import strategies as st

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.price import CachedPrice, encode_price
from aggserver.domain.tiers import Popularity, TierMap
from aggserver.engine.price_view import PriceView
from aggserver.engine.reader import PriceReader
from aggserver.settings import Settings
from aggserver.store.announcements import Announcement, decode_announcement, encode_announcement
from tests.support import poll


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def price(value: float, *, updated_at: int = 1) -> CachedPrice:
    raw = encode_price(
        Aggregate(asset="btcusdt", price=value, last_updated=1, sources=3), updated_at=updated_at, tier="hot"
    )
    return CachedPrice.decode(raw)


TIERS = TierMap(["btcusdt", "ethusdt"], Settings.from_env({}))


def connected_cache(clock: Clock, max_age: float = 60.0) -> PriceView:
    near = PriceView(max_age=max_age, tiers=TIERS, clock=clock)
    near.connected = True
    return near


def test_entries_expire_after_max_age_and_on_invalidation() -> None:
    clock = Clock()
    near = connected_cache(clock, max_age=2.0)
    near.put("btcusdt", price(1.0), generation=near.generation)
    assert near.get("btcusdt") == price(1.0)
    clock.now += 2.0
    assert near.get("btcusdt") is None
    near.put("btcusdt", price(2.0), generation=near.generation)
    near.invalidate(["btcusdt"])
    assert near.get("btcusdt") is None


def test_announced_values_replace_the_copy_without_a_read() -> None:
    clock = Clock()
    near = connected_cache(clock, max_age=2.0)
    near.updated([("btcusdt", price(1.0).raw)])
    assert near.get("btcusdt") == price(1.0)
    near.updated([("btcusdt", price(2.0).raw), ("ethusdt", None)])
    assert near.get("btcusdt") == price(2.0)
    # Each announcement restarts the entry's life: a price announced every second never expires.
    for _ in range(5):
        clock.now += 1.5
        near.updated([("btcusdt", price(2.0).raw)])
        assert near.get("btcusdt") == price(2.0)
    # A bare announcement (the value may not have been stored) drops the copy.
    near.updated([("btcusdt", None)])
    assert near.get("btcusdt") is None


def test_a_read_that_raced_an_announcement_of_its_asset_is_not_kept() -> None:
    near = connected_cache(Clock())
    started = near.generation
    near.updated([("btcusdt", price(2.0).raw)])  # announced while the read was in flight
    near.put("btcusdt", price(1.0), generation=started)
    assert near.get("btcusdt") == price(2.0)
    near.updated([("btcusdt", None)])
    near.put("btcusdt", price(1.0), generation=started)
    assert near.get("btcusdt") is None
    # Announcements of other assets do not stop a read from being kept (at push rates every
    # read races some announcement).
    near.put("ethusdt", price(3.0), generation=started)
    assert near.get("ethusdt") == price(3.0)


def test_a_read_begun_before_a_gap_is_not_kept() -> None:
    near = connected_cache(Clock())
    started = near.generation
    near.gap(connected=False)
    near.gap(connected=True)
    near.put("btcusdt", price(1.0), generation=started)
    assert near.get("btcusdt") is None
    near.put("btcusdt", price(1.0), generation=near.generation)
    assert near.get("btcusdt") == price(1.0)


def test_an_announcement_older_than_the_copy_is_ignored() -> None:
    # On a cluster two writers' announcements can cross: the later-computed value stays.
    near = connected_cache(Clock())
    newer = price(2.0, updated_at=5)
    near.updated([("btcusdt", newer.raw)])
    assert near.get("btcusdt") == newer
    near.updated([("btcusdt", price(1.0).raw)])
    assert near.get("btcusdt") == newer


@settings_profile(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9]{2,32}", fullmatch=True),
            st.one_of(st.none(), st.builds(lambda p: price(p).raw, st.floats(1e-9, 1e12))),
        ),
        min_size=1,
    )
)
def test_announcements_decode_to_what_was_encoded(announcements: list[Announcement]) -> None:
    assert decode_announcement(encode_announcement(announcements)) == announcements


async def test_held_prices_are_read_again_after_the_subscription_returns() -> None:
    stored = {"btcusdt": price(7.0).raw, "ethusdt": None}
    loaded: list[list[str]] = []

    async def load(assets: Sequence[str]) -> list[bytes | None]:
        loaded.append(list(assets))
        return [stored[a] for a in assets]

    near = PriceView(max_age=60.0, tiers=TIERS, load=load, clock=Clock())
    near.gap(connected=True)
    near.updated([("btcusdt", price(1.0).raw), ("ethusdt", price(1.0).raw)])
    near.gap(connected=False)
    assert near.get("btcusdt") is None
    near.gap(connected=True)
    await poll(lambda: near.get("btcusdt") is not None)
    assert near.get("btcusdt") == price(7.0)
    assert near.get("ethusdt") is None
    assert loaded == [["btcusdt", "ethusdt"]]
    await near.close()


def test_near_answers_follow_the_clock_and_the_price() -> None:
    # Bodies are rendered once per asset and second; a new second or a new price renders again.
    clock = Clock()
    near = connected_cache(clock)
    settings = Settings.from_env({})
    reader = PriceReader(
        cache=None,  # type: ignore[arg-type]  # a near-cache hit never reaches Redis
        refresher=None,  # type: ignore[arg-type]
        tiers=TierMap(["btcusdt"], settings),
        popularity=Popularity(promote_rate=1.0, max_promoted=1),
        latest_record=None,  # type: ignore[arg-type]
        view=near,
        clock=clock,
    )
    assert reader.answer_near("btcusdt") is None
    near.put("btcusdt", price(1.0), generation=near.generation)
    first = orjson.loads(reader.answer_near("btcusdt") or b"")
    assert (first["price"], first["age_seconds"]) == (1.0, 99)
    clock.now += 1.0
    later = orjson.loads(reader.answer_near("btcusdt") or b"")
    assert later["age_seconds"] == 100
    near.invalidate(["btcusdt"])
    assert reader.answer_near("btcusdt") is None
    near.put("btcusdt", price(2.0), generation=near.generation)
    assert orjson.loads(reader.answer_near("btcusdt") or b"")["price"] == 2.0


def test_nothing_is_cached_without_a_live_subscription() -> None:
    near = PriceView(max_age=60.0, tiers=TIERS, clock=Clock())
    near.put("btcusdt", price(1.0), generation=near.generation)
    assert near.get("btcusdt") is None


def test_the_last_known_price_outlives_the_copy() -> None:
    # Redis unreachable or the copy dropped: what this process computed or read is still known.
    near = connected_cache(Clock())
    near.computed("btcusdt", price(1.0))
    assert near.get("btcusdt") is None  # computed, not yet stored
    near.stored([price(1.0)], generation=near.generation)
    assert near.get("btcusdt") == price(1.0)
    near.invalidate(["btcusdt"])
    near.gap(connected=False)
    assert near.get("btcusdt") is None
    assert near.last_known("btcusdt") == price(1.0)
    read = near.read("btcusdt", price(2.0).raw, generation=near.generation)
    assert near.last_known("btcusdt") is read
    # The same bytes read again are not decoded again.
    assert near.read("btcusdt", price(2.0).raw, generation=near.generation) is read


def test_streams_are_offered_each_value_once_and_never_an_older_one() -> None:
    near = connected_cache(Clock())
    newer = price(2.0, updated_at=5)
    assert near.unoffered("btcusdt", price(1.0).raw) == price(1.0)
    assert near.unoffered("btcusdt", price(1.0).raw) is None
    assert near.unoffered("btcusdt", newer.raw) == newer
    assert near.unoffered("btcusdt", price(3.0, updated_at=4).raw) is None
    # Once no stream follows the asset, what was offered is forgotten.
    near.unfollowed("btcusdt")
    assert near.unoffered("btcusdt", price(3.0, updated_at=4).raw) == price(3.0, updated_at=4)


def test_an_announced_value_is_decoded_and_rendered_once_for_streams_and_reads() -> None:
    clock = Clock()
    near = connected_cache(clock)
    near.updated([("btcusdt", price(1.0).raw)])
    offered = near.unoffered("btcusdt", price(1.0).raw)
    assert offered is not None
    assert near.get("btcusdt") is offered
    body = near.render(offered, 100)
    assert near.answer("btcusdt", 100) is body
    assert orjson.loads(body)["price"] == 1.0
    # Another second, another body; a price that is not the copy is rendered but not kept.
    assert near.answer("btcusdt", 101) is not body
    other = price(9.0)
    assert orjson.loads(near.render(other, 101))["price"] == 9.0
    assert orjson.loads(near.answer("btcusdt", 101) or b"")["price"] == 1.0
