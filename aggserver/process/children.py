"""Child processes that must not outlive the process that started them, and the supervision of
one that must keep running (the history writer, the data plane)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
from collections.abc import Mapping, Sequence

from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task

__all__ = [
    "RESTART_BACKOFF_MAX",
    "RESTART_BACKOFF_START",
    "SupervisedChild",
    "die_with_parent",
    "note_early_signals",
    "stop_on_signals",
]

log = logging.getLogger(__name__)

# A child that keeps exiting is started again after this long, doubling up to a minute.
RESTART_BACKOFF_START = 1.0
RESTART_BACKOFF_MAX = 60.0
# How long a stopping parent waits for a child still starting before it signals it.
START_WAIT_SECONDS = 15.0


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when its parent dies, even of SIGKILL.

    A killed server must not leave its workers or history writer behind, nor a killed test run
    its services. Linux only; elsewhere it does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def note_early_signals() -> list[int]:
    """For a command that imports a lot before it can stop cleanly: SIGTERM and SIGINT are noted
    (not acted on) until :func:`stop_on_signals` takes over, so a signal that arrives while the
    command is still importing stops it cleanly rather than by the default action."""
    noted: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: noted.append(received))
    return noted


def stop_on_signals(ready_line: str, stopped_early: Sequence[int] = ()) -> asyncio.Event:
    """An event SIGTERM and SIGINT set from now on (already set when ``stopped_early`` noted
    one); then ``ready_line`` on stdout, the line a :class:`SupervisedChild` parent waits for
    before it may signal this process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if stopped_early:
        stop.set()
    print(ready_line, flush=True)
    return stop


class SupervisedChild:
    """One ``aggserver <command>`` child, started again (with back-off) whenever it exits
    unasked, and stopped with SIGTERM within ``stop_seconds``. The child prints one line on
    stdout once it may be signalled (a signal during its imports would kill it unhandled)."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], *, stop_seconds: float
    ) -> None:
        self.name = name
        self._command = list(command)
        self._env = dict(env)
        self._stop_seconds = stop_seconds
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """How the last child exited (None while it runs, or before one started)."""
        return self._process.returncode if self._process is not None else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"{self.name}-child")

    async def stop(self) -> None:
        """SIGTERM the child and wait for it (``stop_seconds``; then it is killed). A child
        still starting is first let finish starting."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_WAIT_SECONDS):
                await self._ready.wait()
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_seconds):
                    await process.wait()
            except TimeoutError:
                log.error("%s %d did not stop in time; killed", self.name, process.pid)
                process.kill()
                await process.wait()
        await stop_task(self._task)

    async def _supervise(self) -> None:
        backoff = Backoff(first=RESTART_BACKOFF_START, cap=RESTART_BACKOFF_MAX)
        while True:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aggserver",
                *self._command,
                env=self._env,
                stdout=asyncio.subprocess.PIPE,
                preexec_fn=die_with_parent,
            )
            self.starts += 1
            log.info("started %s (pid %d)", self.name, self._process.pid)
            assert self._process.stdout is not None
            # Its only line on stdout; EOF (an early exit) also ends the wait.
            await self._process.stdout.readline()
            self._ready.set()
            code = await self._process.wait()
            self._ready.clear()
            if self._stopping:
                return
            delay = backoff.next()
            log.error(
                "%s (pid %d) exited with %s; starting another in %.0f s",
                self.name,
                self._process.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
