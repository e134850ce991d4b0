"""``serve --workers N``: N server processes on one port, kept running, stopped together; with
HISTORY_WRITER=process one history writer for all of them, and with DATA_PLANE=process one data
plane, each kept as a single server keeps its own (started again with back-off; the data plane
stopped before the writer drains)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

import uvloop

from aggserver.history.writer_process import WriterChild
from aggserver.process.children import die_with_parent
from aggserver.process.data_plane import DataPlaneChild
from aggserver.process.tasks import stop_tasks
from aggserver.settings import Settings

__all__ = ["supervise"]

log = logging.getLogger("aggserver")

# More exits than twice the worker count within this many seconds: something is wrong for good.
RESTART_WINDOW_SECONDS = 60.0


class _Workers:
    """The worker processes: each started again when it exits unasked, until they keep exiting."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], count: int) -> None:
        self._argv = list(argv)
        self._env = env
        self._count = count
        self.processes: list[asyncio.subprocess.Process] = []
        self._exits: list[float] = []
        self.stopping = False

    async def _start(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*self._argv, env=self._env, preexec_fn=die_with_parent)

    async def run(self) -> None:
        """Keep ``count`` workers running; returns once they keep exiting (or on stop)."""
        self.processes = [await self._start() for _ in range(self._count)]
        log.info(
            "serving with %d workers (pids %s)", self._count, ", ".join(str(p.pid) for p in self.processes)
        )
        waits = {asyncio.ensure_future(p.wait()): index for index, p in enumerate(self.processes)}
        try:
            while waits:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping:
                    return
                for finished in done:
                    index = waits.pop(finished)
                    now = time.monotonic()
                    self._exits = [t for t in self._exits if now - t < RESTART_WINDOW_SECONDS] + [now]
                    if len(self._exits) > 2 * self._count:
                        log.error("workers keep exiting (last code %s): giving up", finished.result())
                        return
                    old = self.processes[index]
                    log.error("worker %d exited with %s; starting another", old.pid, old.returncode)
                    self.processes[index] = await self._start()
                    waits[asyncio.ensure_future(self.processes[index].wait())] = index
        finally:
            await stop_tasks(waits)

    async def stop(self) -> list[int]:
        """SIGTERM every worker still running; their exit codes once all have exited."""
        self.stopping = True
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        return [await process.wait() for process in self.processes]


async def _supervise(settings: Settings, workers: int, argv: Sequence[str]) -> int:
    writer: WriterChild | None = None
    data_plane: DataPlaneChild | None = None
    env: dict[str, str] = dict(os.environ)
    if settings.history_writer == "process":
        writer = WriterChild(settings)
        writer.start()
        env["HISTORY_WRITER"] = "external"
    if settings.auto_refresh and settings.data_plane_mode == "process":
        # One data plane for every worker: the workers only serve.
        data_plane = DataPlaneChild(settings)
        data_plane.start()
        env["DATA_PLANE"] = "external"
    pool = _Workers(argv, env, workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.ensure_future(pool.run())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    codes = await pool.stop()
    await stop_tasks([running, stopped])
    if data_plane is not None:
        await data_plane.stop()
        codes.append(data_plane.returncode if data_plane.returncode is not None else 0)
    if writer is not None:
        # Last: the workers have appended what they held; the writer drains the outbox.
        await writer.stop()
        codes.append(writer.returncode if writer.returncode is not None else 0)
    # A worker still starting when the signal came dies of it before it can handle it: clean.
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def supervise(settings: Settings, workers: int, serve_args: Sequence[str]) -> None:
    """Run ``workers`` copies of ``serve`` on one port, and with HISTORY_WRITER=process one history
    writer for all of them; SIGTERM/SIGINT stop them all gracefully (the writer drains last).
    Children get SIGTERM should this process die without a word (SIGKILL): none is left behind."""
    argv = [sys.executable, "-m", "aggserver", "serve", "--reuse-port", *serve_args]
    sys.exit(uvloop.run(_supervise(settings, workers, argv)))
