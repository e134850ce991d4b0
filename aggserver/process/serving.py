"""Running one server process: serve until SIGTERM or SIGINT, then stop within a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from collections.abc import AsyncIterator, Callable, Sequence

import uvloop
from aiohttp import web

from aggserver.process.tasks import stop_tasks
from aggserver.settings import ACCEPT_BACKLOG, Settings
from aggserver.web.app import create_app

__all__ = ["LEFTOVER_TASKS_SECONDS", "run"]

log = logging.getLogger("aggserver")

# After shutdown, how long tasks the app did not own (a library's, say) get to finish.
LEFTOVER_TASKS_SECONDS = 5.0


def run(
    settings: Settings,
    *,
    reuse_port: bool = False,
    extra_contexts: Sequence[Callable[[web.Application], AsyncIterator[None]]] = (),
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within a bounded time and return.

    ``extra_contexts`` join the app's cleanup contexts (the dev stack's warm-up progress bar).
    """
    app = create_app(settings)
    log.info("starting: %s", settings.summary())
    _raise_open_files_limit()
    app.cleanup_ctx.extend(extra_contexts)
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_serve(app, settings, reuse_port=reuse_port))
        # web.run_app would wait for every leftover task without limit; a task that swallows
        # its cancellation (seen about once in ten shutdowns) would then hang the process.
        stuck = loop.run_until_complete(stop_tasks(asyncio.all_tasks(loop), LEFTOVER_TASKS_SECONDS))
        if stuck:
            log.warning("exiting with %d tasks that did not stop", len(stuck))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _raise_open_files_limit() -> None:
    # Every client, stream and backend connection is a file descriptor; the usual soft limit of
    # 1,024 would refuse connections long before the CPU is busy.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _serve(app: web.Application, settings: Settings, *, reuse_port: bool) -> None:
    runner = web.AppRunner(
        app,
        # No per-request log line unless asked for: it would cost more than the request.
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=10,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=reuse_port or None,
            backlog=ACCEPT_BACKLOG,
        )
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish (shutdown_timeout), runs the cleanup
        # contexts in reverse: scheduler, refresh path, history flush, pools.
        await runner.cleanup()
