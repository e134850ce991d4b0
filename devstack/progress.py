"""The start-up round filling the cache, shown while the local stack warms up."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from aiohttp import web

from aggserver.engine.scheduler import Scheduler
from aggserver.web.keys import SCHEDULER

__all__ = ["warm_up_progress"]

REPORT_SECONDS = 0.2


async def warm_up_progress(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: a bar on a terminal, a few lines otherwise, until the round is done."""
    task = asyncio.create_task(report_progress(app[SCHEDULER], sys.stdout))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def report_progress(scheduler: Scheduler, out: TextIO) -> None:
    tty = out.isatty()
    last_line = -1
    while scheduler.catch_up_seconds is None:
        done, total = scheduler.catch_up_progress
        if total:
            if tty:
                filled = 30 * done // total
                out.write(f"\rwarming up [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} assets")
            elif done * 4 // total > last_line:  # 0, 25, 50, 75 %
                last_line = done * 4 // total
                out.write(f"warming up: {done:,}/{total:,} assets\n")
            out.flush()
        await asyncio.sleep(REPORT_SECONDS)
    done, total = scheduler.catch_up_progress
    end = "\r" if tty else ""
    out.write(f"{end}warmed up: {total:,} assets priced in {scheduler.catch_up_seconds:.1f} s{' ' * 20}\n")
    out.flush()
