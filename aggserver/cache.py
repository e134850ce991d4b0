"""The Redis side: key scheme, cached value format, and reads batched per loop iteration.

Each asset has one key holding the JSON of its latest aggregate. A GET answers with those bytes
plus two fields computed at answer time (``age_seconds``, ``stale``) spliced onto the end, so an
unchanged price is never decoded and re-encoded per request. Reads issued in the same event-loop
iteration are sent together as one MGET: a thousand concurrent GETs cost one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from aggserver.aggregate import Aggregate
from aggserver.errors import BackendUnavailable
from aggserver.history import HistoryRecord

__all__ = [
    "UPDATES_CHANNEL",
    "CachedPrice",
    "PriceCache",
    "create_redis",
    "encode_price",
    "encode_restored",
    "price_key",
]

KEY_PREFIX = "price:"
# Every write of new prices announces their assets here (comma-separated), for near-caches.
UPDATES_CHANNEL = "prices:updated"


def price_key(asset: str) -> str:
    """The Redis key of an asset's latest aggregate."""
    return KEY_PREFIX + asset


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedPrice:
    """A stored price, decoded once: its JSON without the closing brace, and what freshness needs."""

    raw: bytes
    price: float
    last_updated: int
    tier: str
    restored: bool

    @classmethod
    def decode(cls, raw: bytes) -> CachedPrice:
        fields = orjson.loads(raw)
        return cls(
            raw=raw,
            price=float(fields["price"]),
            last_updated=int(fields["last_updated"]),
            tier=str(fields.get("refresh_tier", "cold")),
            restored=bool(fields.get("restored", False)),
        )

    def answer(self, *, age_seconds: int, stale: bool) -> bytes:
        """The GET body: the stored JSON with the age and staleness of this moment appended."""
        return b'%s,"age_seconds":%d,"stale":%s}' % (
            self.raw[:-1],
            age_seconds,
            b"true" if stale else b"false",
        )


def encode_price(aggregate: Aggregate, *, updated_at: int, tier: str, restored: bool = False) -> bytes:
    """The stored JSON: the three contract fields first, then what the server knows about them."""
    fields: dict[str, object] = {
        "asset": aggregate.asset,
        "price": aggregate.price,
        "last_updated": aggregate.last_updated,
    }
    if aggregate.sources:
        fields["sources"] = aggregate.sources
    fields["updated_at"] = updated_at
    fields["refresh_tier"] = tier
    if restored:
        fields["restored"] = True
    return orjson.dumps(fields)


def encode_restored(record: HistoryRecord, *, tier: str) -> bytes:
    """A price brought back from DynamoDB: marked ``restored`` so it is always served as stale."""
    aggregate = Aggregate(asset=record.asset, price=record.price, last_updated=record.timestamp, sources=0)
    return encode_price(aggregate, updated_at=record.updated_at, tier=tier, restored=True)


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

    def __init__(self, client: redis.Redis, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for the few callers that need other commands (the lease)."""
        return self._client

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

    async def get_many(self, assets: Sequence[str]) -> list[bytes | None]:
        """Values for many assets in one MGET (start-up checks, not the request path)."""
        try:
            async with asyncio.timeout(self._timeout * 5):
                return cast(list[bytes | None], await self._client.mget([price_key(a) for a in assets]))
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"redis read failed: {type(exc).__name__}") from exc

    async def put_many(
        self, values: Sequence[tuple[str, bytes, int]], *, only_if_missing: bool = False
    ) -> None:
        """Store (asset, value, ttl) triples and announce them, in one pipelined round trip."""
        if not values:
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                async with self._client.pipeline(transaction=False) as pipe:
                    for asset, value, ttl in values:
                        pipe.set(price_key(asset), value, ex=ttl, nx=only_if_missing)
                    pipe.publish(UPDATES_CHANNEL, ",".join(asset for asset, _, _ in values))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"redis write failed: {type(exc).__name__}") from exc

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Wait for reads already sent, then release the pool."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()
