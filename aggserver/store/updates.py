"""This process's subscription to the price announcements: who else needs to know a price changed.

Whoever stores new prices publishes them (``store/announcements.py``) in the same round trip. One
subscription per process hands each announcement to its listeners (the near-cache, live
streams). Messages sent while the subscription is down are lost, so listeners are also told
whenever it goes down or comes back: anything they derived from earlier messages may be behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task
from aggserver.store.announcements import UPDATES_CHANNEL, Announcement, decode_announcement
from aggserver.store.connection import RedisClient

__all__ = ["UpdateFeed", "UpdateListener"]

log = logging.getLogger(__name__)


class UpdateListener(Protocol):
    def updated(self, announcements: list[Announcement]) -> None:
        """New prices are in Redis (with their stored JSON where the writer knows it was stored).
        Called on the event loop; must not block."""

    def gap(self, *, connected: bool) -> None:
        """The subscription came up (``connected``) or went down: messages may have been missed."""


class UpdateFeed:
    def __init__(self) -> None:
        self._listeners: list[UpdateListener] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def add_listener(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    def start(self, client: RedisClient) -> None:
        self._task = asyncio.create_task(self._listen(client), name="price-updates")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    def _gap(self, *, connected: bool) -> None:
        self.connected = connected
        for listener in self._listeners:
            listener.gap(connected=connected)

    async def _listen(self, client: RedisClient) -> None:
        backoff = Backoff(first=0.1, cap=2.0)
        while True:
            pubsub = None
            try:
                if isinstance(client, RedisCluster):
                    await client.initialize()  # its pub/sub needs the slot map; commands load it lazily
                pubsub = client.pubsub()
                await pubsub.subscribe(UPDATES_CHANNEL)
                self._gap(connected=True)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and message["type"] == "message":
                        announcements = decode_announcement(message["data"])
                        for listener in self._listeners:
                            listener.updated(announcements)
            except (RedisError, OSError) as exc:
                log.debug("price update subscription lost: %s", type(exc).__name__)
            finally:
                if self.connected:
                    self._gap(connected=False)
                if pubsub is not None:
                    await pubsub.aclose()
            await asyncio.sleep(backoff.next())
