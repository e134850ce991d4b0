"""The near-cache stays coherent with Redis across processes; Redis hiccups never hang a read."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
from hypothesis import given
from hypothesis import settings as settings_profile
from hypothesis import strategies as st

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.price import CachedPrice, encode_price
from aggserver.domain.symbols import load_symbols
from aggserver.domain.tiers import Popularity, TierMap
from aggserver.engine.price_view import PriceView
from aggserver.engine.reader import PriceReader
from aggserver.settings import Settings
from aggserver.store.announcements import Announcement, decode_announcement, encode_announcement
from aggserver.web.app import create_app
from aggserver.web.keys import PRICE_VIEW
from devstack.services import Service, free_port
from tests.support import Exchanges, answers, checked, poll, server_env


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


@pytest.fixture
def other_process(settings: Settings, redis_service: Service) -> Iterator[str]:
    port = free_port()
    env = server_env(settings, redis_service.url, port, AUTO_REFRESH="false")
    process = subprocess.Popen([sys.executable, "-m", "aggserver", "serve"], env=env)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


async def long_lived_reader(aiohttp_client: Any, settings: Settings, other_process: str) -> Any:
    """This process, with a near-cache that would keep a copy for an hour (only announcements
    can change it), once it and the other process are up."""
    client = await aiohttp_client(create_app(dataclasses.replace(settings, near_cache_seconds=3600)))
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{other_process}/health"), timeout=30)
    await poll(lambda: client.app[PRICE_VIEW].connected)
    return client


async def test_update_by_another_process_is_seen_through_pubsub(
    settings: Settings,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    other_process: str,
) -> None:
    client = await long_lived_reader(aiohttp_client, settings, other_process)
    app = client.app
    now = int(time.time())
    for index in range(3):
        await exchanges.pin(index, {"btcusdt": {"price": 100.0, "volume": 1, "timestamp": now}})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert (await checked(await client.get("/prices/btcusdt")))["price"] == 100.0
        assert app[PRICE_VIEW].hits >= 1

        for index in range(3):
            await exchanges.pin(index, {"btcusdt": {"price": 200.0, "volume": 1, "timestamp": now}})
        async with session.post(f"{other_process}/refresh/btcusdt") as response:
            assert response.status == 200

    async def updated() -> bool:
        return bool((await (await client.get("/prices/btcusdt")).json())["price"] == 200.0)

    await poll(updated, timeout=10)


async def test_two_processes_agree_with_redis_after_a_burst_of_updates(
    settings: Settings,
    exchanges: Exchanges,
    redis_client: redis.Redis,
    aiohttp_client: Any,
    other_process: str,
) -> None:
    # Another process refreshes twenty assets five times over while this one reads them through a
    # near-cache that would keep a copy for an hour. Announcements carry the values: once the
    # writes stop, every answer here equals Redis's value and comes from the near-cache.
    client = await long_lived_reader(aiohttp_client, settings, other_process)
    near = client.app[PRICE_VIEW]
    assets = list(load_symbols(settings.symbols_file).ordered[:20])
    now = int(time.time())
    async with aiohttp.ClientSession() as session:

        async def read_all() -> None:
            for response in await asyncio.gather(*(client.get(f"/prices/{a}") for a in assets)):
                assert response.status in (200, 404)

        for round_ in range(5):
            quotes = {a: {"price": 100.0 + round_, "volume": 1, "timestamp": now} for a in assets}
            for index in range(3):
                await exchanges.pin(index, quotes)
            refreshes = [session.post(f"{other_process}/refresh/{a}") for a in assets]
            results = await asyncio.gather(*refreshes, read_all())
            assert all(r.status == 200 for r in results[:-1])  # type: ignore[union-attr]

    async def stored() -> dict[str, float]:
        values = await redis_client.mget([f"price:{a}" for a in assets])
        return {a: orjson.loads(v or b"null")["price"] for a, v in zip(assets, values, strict=True)}

    async def served() -> dict[str, float]:
        responses = await asyncio.gather(*(client.get(f"/prices/{a}") for a in assets))
        return {a: (await checked(response))["price"] for a, response in zip(assets, responses, strict=True)}

    assert await stored() == dict.fromkeys(assets, 104.0)
    await poll(lambda: _all_equal(served(), dict.fromkeys(assets, 104.0)), timeout=10)
    misses = near.misses
    assert await served() == await stored()
    assert near.misses == misses  # every answer came from this process's copy


async def _all_equal(answer: Any, expected: dict[str, float]) -> bool:
    return bool(await answer == expected)


async def test_reads_survive_client_kill_and_client_pause(
    settings: Settings, exchanges: Exchanges, redis_client: redis.Redis, aiohttp_client: Any
) -> None:
    # No near-cache: every GET goes to Redis through the batcher.
    app = create_app(dataclasses.replace(settings, near_cache_seconds=0, redis_timeout_seconds=0.5))
    client = await aiohttp_client(app)
    assert (await client.post("/refresh/btcusdt")).status == 200
    assert (await client.get("/prices/btcusdt")).status == 200

    await redis_client.client_kill_filter(_type="normal", skipme=True)
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.get("/prices/btcusdt") for _ in range(20))), 10
    )
    assert all(r.status == 200 for r in responses)

    # Redis stops answering: reads give up after the timeout and fall back to this process's
    # last price instead of hanging; once Redis answers again they read it again.
    await redis_client.client_pause(3000)
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.get("/prices/btcusdt") for _ in range(20))), 10
    )
    assert all(r.status == 200 for r in responses)
    await redis_client.client_unpause()
    await redis_client.delete("price:btcusdt")
    await redis_client.set(
        "price:btcusdt",
        encode_price(
            Aggregate(asset="btcusdt", price=42.0, last_updated=int(time.time()), sources=3),
            updated_at=1,
            tier="hot",
        ),
    )
    await poll(lambda: _price_is(client, 42.0), timeout=10)


async def _price_is(client: Any, value: float) -> bool:
    return bool((await (await client.get("/prices/btcusdt")).json())["price"] == value)
