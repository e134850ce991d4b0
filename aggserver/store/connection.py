"""Connecting to Redis, standalone or cluster, and the hash-tag buckets keys are spread over.

On a Redis Cluster a multi-key command or a transaction must stay within one hash slot, so keys
that are read or written together carry a hash tag naming one of ``CLUSTER_BUCKETS`` buckets:
few enough that a batch is a handful of commands, enough to spread over a cluster's nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from aggserver.errors import BackendUnavailable

__all__ = ["CLUSTER_BUCKETS", "REDIS_FAILURES", "RedisClient", "bucket_of", "create_redis", "redis_call"]

# What a Redis call can end in when Redis is away, slow or restarting.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


@contextlib.asynccontextmanager
async def redis_call(timeout: float, what: str = "read") -> AsyncIterator[None]:
    """Redis calls inside end within ``timeout`` seconds, or in BackendUnavailable ("redis
    ``what`` failed: <the failure>") instead of whatever Redis or the network raised."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except REDIS_FAILURES as exc:
        raise BackendUnavailable(f"redis {what} failed: {type(exc).__name__}") from exc


CLUSTER_BUCKETS = 16

RedisClient = redis.Redis | RedisCluster


def bucket_of(asset: str) -> int:
    """The hash-tag bucket of an asset's keys on a cluster."""
    return zlib.crc32(asset.encode()) % CLUSTER_BUCKETS


def create_redis(url: str, *, max_connections: int, timeout: float, cluster: bool = False) -> RedisClient:
    """A client over a bounded, blocking pool: a burst waits for a connection instead of failing.

    ``from_pool`` hands the pool to the client, so closing the client closes its connections.
    A cluster client keeps a pool per node, found from ``url`` (any one node) on first use.
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return redis.Redis.from_pool(pool)
