"""Who does the refresh work: one lease in Redis shared by every worker and instance.

The holder renews ``scheduler:lease`` (SET NX PX) every third of its lifetime and runs the
scheduler; everyone else checks as often and takes over once the lease expires, at most
``ttl`` (plus a third) after the holder died. Finding another holder stops the scheduler at
once; an unreachable Redis does not (nobody else can take the lease meanwhile). A paused
holder can overlap a successor for up to one renewal period; that only costs duplicate
fetches, because every write is idempotent (latest price by asset, history by asset and
exchange timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from aggserver.redis_client import RedisClient

__all__ = ["LEASE_KEY", "Lease"]

log = logging.getLogger(__name__)

LEASE_KEY = "scheduler:lease"
# Beyond one renewal period, how long stop() waits for the renewal loop to end.
STOP_GRACE_SECONDS = 2.0

# Renew only if we still hold it (a compare-and-set: a plain SET could steal it back), or
# take it again if it vanished (a Redis restart without persistence).
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
elseif not holder then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    """Runs ``on_acquire`` while this process holds the lease and ``on_lose`` when it stops."""

    def __init__(
        self,
        client: RedisClient,
        *,
        ttl_seconds: float,
        on_acquire: Callable[[], None],
        on_lose: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._ttl_ms = int(ttl_seconds * 1000)
        self._on_acquire = on_acquire
        self._on_lose = on_lose
        self.holder_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler-lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            # Bounded: a Redis call interrupted by the cancellation can turn it into a timeout
            # error, which the loop treats as Redis being away; the flag then ends the loop at
            # its next turn. (Seen in CI: teardown waited forever on a task left "cancelling".)
            await asyncio.wait({self._task}, timeout=self._ttl_ms / 3000 + STOP_GRACE_SECONDS)
        if self.held:
            await self._lost("shutting down", level=logging.INFO)
            with contextlib.suppress(RedisError, OSError):  # else it expires by itself
                await self._client.eval(_RELEASE, 1, LEASE_KEY, self.holder_id)

    async def _run(self) -> None:
        period = self._ttl_ms / 3000
        while not self._stopping:
            try:
                if self.held:
                    renewed = await self._client.eval(_RENEW, 1, LEASE_KEY, self.holder_id, self._ttl_ms)
                    if not renewed:
                        await self._lost("another instance holds it")
                elif await self._client.set(LEASE_KEY, self.holder_id, nx=True, px=self._ttl_ms):
                    self.held = True
                    log.info("refresh lease acquired (%s): this process runs the scheduler", self.holder_id)
                    self._on_acquire()
            except (RedisError, OSError) as exc:
                # Keep the role: without Redis nobody else can take the lease either, and
                # refreshes must go on (served from memory) until Redis is back.
                log.debug("refresh lease not renewed: %s", type(exc).__name__)
            await asyncio.sleep(period)

    async def _lost(self, why: str, *, level: int = logging.WARNING) -> None:
        self.held = False
        log.log(level, "refresh lease given up (%s): scheduler stopped", why)
        await self._on_lose()
