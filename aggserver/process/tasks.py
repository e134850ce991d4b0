"""Stopping background tasks: cancel, then wait a bounded time.

A cancellation can be lost inside a library (Python 3.11 drops one that lands while an
``asyncio.timeout`` expires; a Redis call can turn it into a timeout error that a loop takes
for Redis being away), and the task then goes on. Shutdown must not wait for it forever, so
every stop here is bounded and names what did not stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["STOP_SECONDS", "stop_task", "stop_tasks"]

log = logging.getLogger(__name__)

# How long a cancelled task may take to end before shutdown goes on without it.
STOP_SECONDS = 5.0


async def stop_tasks(
    tasks: Iterable[asyncio.Future[Any] | None], timeout: float = STOP_SECONDS
) -> set[asyncio.Future[Any]]:
    """Cancel every task and wait at most ``timeout`` seconds for all of them; the ones still
    running are cancelled once more, logged and returned. What ended is retrieved, so no
    "exception was never retrieved" is left behind."""
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if not pending:
        return set()
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", _name(task), task.exception())
    for task in stuck:
        log.warning("task %s did not stop within %.0f s of being cancelled", _name(task), timeout)
        task.cancel()
    return stuck


async def stop_task(task: asyncio.Future[Any] | None, timeout: float = STOP_SECONDS) -> bool:
    """Cancel ``task`` and wait at most ``timeout`` seconds; whether it ended."""
    return not await stop_tasks([task], timeout)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
