"""``serve --workers N``: N server processes on one port, kept running, stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from aggserver.history.writer_process import writer_env
from aggserver.process.children import die_with_parent
from aggserver.settings import Settings

__all__ = ["supervise"]

log = logging.getLogger("aggserver")

# More exits than twice the worker count within this many seconds: something is wrong for good.
RESTART_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.5


class _Children:
    """The workers and, with HISTORY_WRITER=process, the one history writer they share."""

    def __init__(self, settings: Settings, worker_argv: Sequence[str], workers: int) -> None:
        self._settings = settings
        self._worker_argv = list(worker_argv)
        self._worker_env: dict[str, str] | None = None
        self.writer: subprocess.Popen[bytes] | None = None
        if settings.history_writer == "process":
            self._worker_env = {**os.environ, "HISTORY_WRITER": "external"}
            self.writer = self._start_writer()
        self.workers = [self._start_worker() for _ in range(workers)]
        self._exits: list[float] = []
        self.stopping = False

    def _start_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._worker_argv, env=self._worker_env, preexec_fn=die_with_parent)

    def _start_writer(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "aggserver", "history-writer"],
            env=writer_env(self._settings),
            preexec_fn=die_with_parent,
        )

    def replace_exited(self) -> bool:
        """Start a new process for each one that exited; False when they keep exiting."""
        for index, process in enumerate(self.workers):
            code = process.poll()
            if code is None or self.stopping:
                continue
            now = time.monotonic()
            self._exits = [t for t in self._exits if now - t < RESTART_WINDOW_SECONDS] + [now]
            if len(self._exits) > 2 * len(self.workers):
                log.error("workers keep exiting (last code %s): giving up", code)
                return False
            log.error("worker %d exited with %s; starting another", process.pid, code)
            self.workers[index] = self._start_worker()
        if self.writer is not None and self.writer.poll() is not None and not self.stopping:
            log.error("history writer exited with %s; starting another", self.writer.returncode)
            self.writer = self._start_writer()
        return True

    def stop_workers(self) -> None:
        self.stopping = True
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self) -> list[int]:
        codes = [process.wait() for process in self.workers]
        if self.writer is not None:
            # Last: the workers have appended what they held; the writer drains the outbox.
            self.writer.send_signal(signal.SIGTERM)
            codes.append(self.writer.wait())
        return codes


def supervise(settings: Settings, workers: int, serve_args: Sequence[str]) -> None:
    """Run ``workers`` copies of ``serve`` on one port, and with HISTORY_WRITER=process one history
    writer for all of them; SIGTERM/SIGINT stop them all gracefully (the writer drains last).
    Children get SIGTERM should this process die without a word (SIGKILL): none is left behind."""
    argv = [sys.executable, "-m", "aggserver", "serve", "--reuse-port", *serve_args]
    children = _Children(settings, argv, workers)

    def stop(_signum: int, _frame: object) -> None:
        children.stop_workers()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving with %d workers (pids %s)", workers, ", ".join(str(p.pid) for p in children.workers))
    while not children.stopping:
        if not children.replace_exited():
            stop(signal.SIGTERM, None)
            break
        time.sleep(POLL_SECONDS)
    codes = children.wait()
    # A worker still starting when the signal came dies of it before it can handle it: clean.
    sys.exit(0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1)
