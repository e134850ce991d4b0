"""The data plane as a process of its own: ``aggserver ingest`` runs the refresh work (listings,
polling and streams, aggregation, USD prices, the scheduler and its leases) without an HTTP
server, and ``aggserver serve`` starts it as a child with DATA_PLANE=process, so no refresh work
shares the serving loop. Serving processes read Redis and follow the announcements; a POST
/refresh or a cache miss is still refreshed where it is asked (single-flight per process)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from aggserver.process.children import SupervisedChild, stop_on_signals
from aggserver.settings import Settings

__all__ = ["READY_LINE", "DataPlaneChild", "data_plane_env", "serve_data_plane"]

READY_LINE = "data plane ready"


def data_plane_env(settings: Settings) -> dict[str, str]:
    """A data plane child's environment: the server's, running the work itself, and writing no
    history of its own (the server's writer drains what it queues)."""
    return {**os.environ, **settings.environ, "DATA_PLANE": "inline", "HISTORY_WRITER": "external"}


class DataPlaneChild(SupervisedChild):
    """The ``aggserver ingest`` child of a server, started again whenever it exits unasked (a
    new one takes the refresh leases over once the dead one's expire)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "data plane",
            ["ingest"],
            data_plane_env(settings),
            stop_seconds=settings.history_flush_seconds + 10,
        )


async def serve_data_plane(settings: Settings, *, stopped_early: Sequence[int] = ()) -> None:
    """The ``ingest`` command: the refresh work until SIGTERM or SIGINT, then a bounded stop
    (the scheduler first, so the outbox takes what it queued)."""
    from aiohttp import web

    from aggserver.web.app import create_data_plane

    stop = stop_on_signals(READY_LINE, stopped_early)
    # No site: the runner only runs the app's cleanup contexts, which hold the work.
    runner = web.AppRunner(create_data_plane(replace(settings, data_plane="inline")), handle_signals=False)
    await runner.setup()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
