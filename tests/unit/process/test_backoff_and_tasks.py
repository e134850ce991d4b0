"""The one backoff and the one bounded task stop every retry loop and shutdown use."""

from __future__ import annotations

import asyncio
import random

import pytest

from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task, stop_tasks


def test_delays_double_up_to_the_cap_and_start_again_after_a_reset() -> None:
    backoff = Backoff(first=0.5, cap=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    capped = backoff.at_cap
    backoff.reset()
    assert (capped, backoff.at_cap) == (True, False)
    assert backoff.next() == 0.5


def test_full_jitter_draws_each_delay_below_its_exponential_one() -> None:
    jittered = Backoff(first=1.0, cap=8.0, jitter=True, rng=random.Random(3))
    plain = Backoff(first=1.0, cap=8.0)
    pairs = [(jittered.next(), plain.next()) for _ in range(200)]
    assert all(0 <= drawn <= ceiling for drawn, ceiling in pairs)
    # Spread out, not pinned to the ceiling: peers cut off together come back apart.
    assert len({round(drawn, 3) for drawn, _ in pairs}) > 150


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_a_backoff_needs_a_positive_first_delay_within_its_cap(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first=first, cap=cap)


async def test_a_stopped_task_is_cancelled_and_awaited() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    task = asyncio.ensure_future(forever())
    await asyncio.sleep(0)
    assert await stop_task(task)
    assert task.cancelled()
    assert cancelled.is_set()
    assert await stop_task(None)


async def test_a_task_that_swallows_its_cancellation_is_left_behind_within_the_bound() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # what a library that loses a cancellation looks like

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    stuck = await stop_tasks([task], timeout=0.2)
    assert stuck == {task}
    # A hang detector just above the bound: stop_tasks must return at the bound, not wait on.
    assert loop.time() - started < 2.0
    release.set()
    await asyncio.wait_for(task, 2)


async def test_a_task_that_ended_with_an_error_is_retrieved_not_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    assert await stop_tasks([task]) == set()
    assert isinstance(task.exception(), RuntimeError)
