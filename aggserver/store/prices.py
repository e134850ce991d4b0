"""The Redis side: key scheme, reads batched per loop iteration, the write script.

Each asset has one key holding the JSON of its latest aggregate (its format: ``domain/price.py``).
Reads issued in the same event-loop iteration are sent together as one MGET: a thousand
concurrent GETs cost one round trip.

On a Redis Cluster a multi-key command must stay within one hash slot, so price keys carry a
hash tag naming one of ``CLUSTER_BUCKETS`` buckets (``price:{07}btcusdt``): a batch becomes at
most that many MGETs, sent to their nodes concurrently, and the buckets spread over the nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster

from aggserver.domain.price import sequenced
from aggserver.errors import BackendUnavailable
from aggserver.history.outbox import ENTRY_FIELD, OutboxAppend, encode_entry
from aggserver.history.records import HistoryRecord
from aggserver.store.announcements import UPDATES_CHANNEL, encode_announcement
from aggserver.store.connection import RedisClient, bucket_of, redis_call

__all__ = ["PriceCache", "price_key"]

KEY_PREFIX = "price:"
# Each asset's sequence number: how many new aggregates of it were stored (no TTL).
SEQ_PREFIX = "seq:"
# Beside each price, how each exchange contributed to it (``?detail=sources``).
SOURCES_PREFIX = "sources:"

# One write of prices (``PriceCache._put_scripted``). KEYS[1]: the history outbox stream; then the
# n price keys, the n sequence keys of the same assets, and the breakdown keys. ARGV[1]: n;
# ARGV[2]: 1 when the prices are set only if missing (restored from history); ARGV[3]: the
# number of history records, their entries following; then (value, ttl, asset) per price and
# (value, ttl) per breakdown. Records first, so a price is never visible without its record. A
# new price takes the asset's next seq, appended as its last field (``price.sequenced``); a
# restored one the current seq. Announces what it stored; returns the outbox's length (0 without
# records) and the seqs.
_STORE = f"""
local n = tonumber(ARGV[1])
local nx = ARGV[2] == '1'
local records = tonumber(ARGV[3])
for i = 1, records do
  redis.call('xadd', KEYS[1], '*', '{ENTRY_FIELD.decode()}', ARGV[3 + i])
end
local at = 3 + records
local lines = {{}}
local seqs = {{}}
for i = 1, n do
  local value, ttl, asset = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  at = at + 3
  local seq
  if nx then
    seq = tonumber(redis.call('get', KEYS[1 + n + i]) or '0')
  else
    seq = redis.call('incr', KEYS[1 + n + i])
  end
  value = string.sub(value, 1, -2) .. ',"seq":' .. seq .. '}}'
  if nx then
    redis.call('set', KEYS[1 + i], value, 'EX', ttl, 'NX')
    lines[i] = asset
  else
    redis.call('set', KEYS[1 + i], value, 'EX', ttl)
    lines[i] = asset .. ' ' .. value
  end
  seqs[i] = seq
end
for k = 2 + 2 * n, #KEYS do
  redis.call('set', KEYS[k], ARGV[at + 1], 'EX', ARGV[at + 2])
  at = at + 2
end
redis.call('publish', '{UPDATES_CHANNEL}', table.concat(lines, '\\n'))
local length = 0
if records > 0 then
  length = redis.call('xlen', KEYS[1])
end
return {{length, seqs}}
"""

# A batch read waiting for the next MGET: its keys, and the future of their values in order.
_ListRead = tuple[list[str], "asyncio.Future[list[bytes | None]]"]


def price_key(asset: str, *, cluster: bool = False, prefix: str = KEY_PREFIX) -> str:
    """The Redis key of an asset's latest aggregate (hash-tagged by bucket on a cluster)."""
    if cluster:
        return f"{prefix}{{{bucket_of(asset):02d}}}{asset}"
    return prefix + asset


class PriceCache:
    """Latest prices in Redis, with reads coalesced into one MGET per loop iteration."""

    def __init__(self, client: RedisClient, *, timeout: float, outbox: OutboxAppend) -> None:
        self._client = client
        self._outbox = outbox
        self._cluster = isinstance(client, RedisCluster)
        self._timeout = timeout
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._pending_lists: list[_ListRead] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._store_script = client.register_script(_STORE)

    @property
    def client(self) -> RedisClient:
        """The underlying client, for the few callers that need other commands (the lease)."""
        return self._client

    async def get(self, asset: str) -> bytes | None:
        """The cached JSON of ``asset``, or None; BackendUnavailable if Redis does not answer."""
        loop = asyncio.get_running_loop()
        if not self._pending and not self._pending_lists:
            loop.call_soon(self._flush)
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._pending.setdefault(price_key(asset, cluster=self._cluster), []).append(future)
        return await future

    async def get_list(self, assets: Sequence[str]) -> list[bytes | None]:
        """Values for many assets, read in the same MGET as this loop iteration's other reads
        (one future for the whole list, so a thousand assets cost no more than one ``get``)."""
        loop = asyncio.get_running_loop()
        if not self._pending and not self._pending_lists:
            loop.call_soon(self._flush)
        future: asyncio.Future[list[bytes | None]] = loop.create_future()
        self._pending_lists.append(([price_key(a, cluster=self._cluster) for a in assets], future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        lists, self._pending_lists = self._pending_lists, []
        task = asyncio.get_running_loop().create_task(self._read(batch, lists))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _read(
        self, batch: dict[str, list[asyncio.Future[bytes | None]]], lists: list[_ListRead]
    ) -> None:
        keys = list(batch)
        if lists:
            keys += dict.fromkeys(k for list_keys, _ in lists for k in list_keys if k not in batch)
        try:
            async with redis_call(self._timeout):
                values = await self._mget(keys)
        except BackendUnavailable as exc:
            for future in [f for futures in batch.values() for f in futures] + [f for _, f in lists]:
                if not future.done():
                    future.set_exception(BackendUnavailable(str(exc)))
            return
        _answer_reads(batch, lists, dict(zip(keys, values, strict=True)))

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        # Without decode_responses the client returns bytes, never str.
        if isinstance(self._client, RedisCluster):
            return cast(list[bytes | None], await self._client.mget_nonatomic(keys))
        return cast(list[bytes | None], await self._client.mget(keys))

    async def get_many(self, assets: Sequence[str]) -> list[bytes | None]:
        """Values for many assets in one MGET (start-up checks, not the request path)."""
        async with redis_call(self._timeout * 5):
            return await self._mget([price_key(a, cluster=self._cluster) for a in assets])

    async def get_sources(self, asset: str) -> bytes | None:
        """The stored per-exchange breakdown of ``asset``'s price (not on the hot path)."""
        async with redis_call(self._timeout):
            value = await self._client.get(price_key(asset, cluster=self._cluster, prefix=SOURCES_PREFIX))
        return cast(bytes | None, value)

    async def put_many(
        self,
        values: Sequence[tuple[str, bytes, int]],
        *,
        only_if_missing: bool = False,
        sources: Sequence[tuple[str, bytes, int]] = (),
        records: Sequence[HistoryRecord] = (),
    ) -> list[int]:
        """Store (asset, value, ttl) triples, the breakdowns in ``sources`` and the history
        ``records`` (appended to the outbox), and announce them (``store/announcements.py``): one
        transaction, so a price is never visible without its record. Each value is stored with
        its asset's ``seq`` appended (the next one; the current one when ``only_if_missing``);
        returns the seqs in the order of ``values``."""
        if not values:
            return []
        async with redis_call(self._timeout * 2, "write"):
            if isinstance(self._client, RedisCluster):
                lengths, seqs = await self._put_cluster(values, only_if_missing, sources, records)
            else:
                lengths, seqs = await self._put_scripted(values, only_if_missing, sources, records)
            await self._outbox.bound(self._client, lengths)
        return seqs

    async def _put_scripted(
        self,
        values: Sequence[tuple[str, bytes, int]],
        only_if_missing: bool,
        sources: Sequence[tuple[str, bytes, int]],
        records: Sequence[HistoryRecord],
    ) -> tuple[dict[str, int], list[int]]:
        """The whole write as one script (atomic like MULTI/EXEC): redis-py spends ~11 µs of
        client CPU per pipelined SET and ~1 µs per script argument, and at push rates these
        writes are most of the server's work. Returns the outbox stream's length after it, and
        the seqs."""
        stream = self._outbox.keys.stream("")
        keys = [stream, *(price_key(a) for a, _, _ in values)]
        keys += [price_key(a, prefix=SEQ_PREFIX) for a, _, _ in values]
        keys += [price_key(a, prefix=SOURCES_PREFIX) for a, _, _ in sources]
        args: list[bytes | int | str] = [len(values), 1 if only_if_missing else 0, len(records)]
        args += [encode_entry(record) for record in records]
        for asset, value, ttl in values:
            args += (value, ttl, asset)
        for _, value, ttl in sources:
            args += (value, ttl)
        length, seqs = await self._store_script(keys=keys, args=args)
        return ({stream: int(length)} if records else {}), [int(seq) for seq in seqs]

    def _stage_values(
        self,
        pipe: Any,
        values: Iterable[tuple[str, bytes, int]],
        only_if_missing: bool,
        sources: Iterable[tuple[str, bytes, int]],
    ) -> None:
        for asset, value, ttl in values:
            pipe.set(price_key(asset, cluster=self._cluster), value, ex=ttl, nx=only_if_missing)
        for asset, value, ttl in sources:
            pipe.set(price_key(asset, cluster=self._cluster, prefix=SOURCES_PREFIX), value, ex=ttl)

    async def _put_cluster(
        self,
        values: Sequence[tuple[str, bytes, int]],
        only_if_missing: bool,
        sources: Sequence[tuple[str, bytes, int]],
        records: Sequence[HistoryRecord],
    ) -> tuple[dict[str, int], list[int]]:
        """The cluster's form of the transaction: the seqs first, then one pipeline, records
        first. A cluster pipeline sends each node its commands in order on one connection, and a
        record's stream shares its price's slot, so a price is never stored before its record.
        (redis-py's cluster transactions cost ~20 ms each, one per slot: 0.7 s for a 500-asset
        chunk over 16 slots.) Taking the seqs in a round trip of their own, two writers of one
        asset can store in the opposite order of their seqs (the near-caches keep the later-computed
        value, ``engine/price_view.py``).
        The announcement follows: a cluster pipeline refuses PUBLISH, and announcing before
        storing could let a near-cache reread and keep the old value. Returns each stream's length."""
        async with self._client.pipeline(transaction=False) as pipe:
            for asset, _, _ in values:
                key = price_key(asset, cluster=True, prefix=SEQ_PREFIX)
                if only_if_missing:
                    pipe.get(key)
                else:
                    pipe.incr(key)
            seqs = [int(seq or 0) for seq in await pipe.execute()]
        values = [
            (asset, sequenced(value, seq), ttl) for (asset, value, ttl), seq in zip(values, seqs, strict=True)
        ]
        streams = self._outbox.streams(records)
        async with self._client.pipeline(transaction=False) as pipe:
            self._outbox.stage(pipe, records)
            self._stage_values(pipe, values, only_if_missing, sources)
            for stream in streams:
                pipe.xlen(stream)
            replies = await pipe.execute()
        await self._client.publish(UPDATES_CHANNEL, _announcement(values, only_if_missing))
        lengths = zip(streams, (int(n) for n in replies[len(replies) - len(streams) :]), strict=True)
        return dict(lengths), seqs

    async def ping(self) -> bool:
        try:
            async with redis_call(self._timeout):
                return bool(await self._client.ping())
        except BackendUnavailable:
            return False

    async def close(self) -> None:
        """Wait for reads already sent, then release the pool."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()


def _announcement(values: Iterable[tuple[str, bytes, int]], only_if_missing: bool) -> bytes:
    # A SET NX may not have stored the value: then only the asset is announced.
    return encode_announcement((asset, None if only_if_missing else value) for asset, value, _ in values)


def _answer_reads(
    batch: dict[str, list[asyncio.Future[bytes | None]]],
    lists: list[_ListRead],
    found: dict[str, bytes | None],
) -> None:
    """Hands each waiting read its value from one MGET; a read given up on is skipped."""
    for key, futures in batch.items():
        for future in futures:
            if not future.done():
                future.set_result(found[key])
    for list_keys, list_future in lists:
        if not list_future.done():
            list_future.set_result([found[key] for key in list_keys])
