"""The Redis side: key scheme, cached value format, and reads batched per loop iteration.

Each asset has one key holding the ready-to-send JSON of its latest aggregate, so a GET answers
with the stored bytes and never re-encodes. Reads issued in the same event-loop iteration are
sent together as one MGET: a thousand concurrent GETs cost one round trip, not a thousand.
"""

from __future__ import annotations

import asyncio
from typing import cast

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from aggserver.aggregate import Aggregate
from aggserver.errors import BackendUnavailable

__all__ = ["PriceCache", "encode_price", "price_key"]

KEY_PREFIX = "price:"


def price_key(asset: str) -> str:
    """The Redis key of an asset's latest aggregate."""
    return KEY_PREFIX + asset


def encode_price(aggregate: Aggregate, *, updated_at: int) -> bytes:
    """The JSON a GET answers with: the three contract fields first, then extras."""
    return orjson.dumps(
        {
            "asset": aggregate.asset,
            "price": aggregate.price,
            "last_updated": aggregate.last_updated,
            "sources": aggregate.sources,
            "updated_at": updated_at,
        }
    )


def create_redis(url: str, *, max_connections: int, timeout: float) -> redis.Redis:
    """A client over a bounded, blocking pool: a burst waits for a connection instead of failing.

    ``from_pool`` hands the pool to the client, so closing the client closes its connections.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return redis.Redis.from_pool(pool)


class PriceCache:
    """Latest prices in Redis, with reads coalesced into one MGET per loop iteration."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int, timeout: float) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._timeout = timeout
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()

    async def get(self, asset: str) -> bytes | None:
        """The cached JSON of ``asset``, or None; BackendUnavailable if Redis does not answer."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._pending.setdefault(price_key(asset), []).append(future)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._read(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _read(self, batch: dict[str, list[asyncio.Future[bytes | None]]]) -> None:
        keys = list(batch)
        try:
            async with asyncio.timeout(self._timeout):
                # Without decode_responses the client returns bytes, never str.
                values = cast(list[bytes | None], await self._client.mget(keys))
        except (RedisError, OSError, TimeoutError) as exc:
            reason = f"redis read failed: {type(exc).__name__}"
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(BackendUnavailable(reason))
            return
        for key, value in zip(keys, values, strict=True):
            for future in batch[key]:
                if not future.done():
                    future.set_result(value)

    async def put(self, aggregate: Aggregate, *, updated_at: int) -> bytes:
        """Store ``aggregate`` with the TTL; returns the bytes stored."""
        value = encode_price(aggregate, updated_at=updated_at)
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(price_key(aggregate.asset), value, ex=self._ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"redis write failed: {type(exc).__name__}") from exc
        return value

    async def close(self) -> None:
        """Wait for reads already sent, then release the pool."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()
