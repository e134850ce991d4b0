"""REDIS_URL pointing at a real three-node Redis Cluster (redis-server --cluster-enabled yes)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.domain.symbols import load_symbols
from aggserver.history.outbox import OutboxKeys
from aggserver.settings import Settings
from aggserver.store.connection import create_redis
from aggserver.store.lease import Lease
from aggserver.web.app import create_app
from aggserver.web.keys import PRICE_VIEW
from devstack.services import Service, free_port, start_redis_cluster
from tests.support import Exchanges, answers, checked, child_server, poll, server_env


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[Service]]:
    nodes = start_redis_cluster(3)
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
async def node_clients(cluster: list[Service]) -> AsyncIterator[list[redis.Redis]]:
    """One plain client per node, to see where keys landed; every node starts empty."""
    clients = [redis.Redis.from_url(node.url) for node in cluster]
    for client in clients:
        await client.flushall()
    yield clients
    for client in clients:
        await client.aclose()


@pytest.fixture
def cluster_settings(settings: Settings, cluster: list[Service]) -> Settings:
    return dataclasses.replace(settings, redis_url=cluster[0].url, redis_cluster=True)


async def test_refresh_and_batched_reads_across_the_nodes(
    cluster_settings: Settings,
    node_clients: list[redis.Redis],
    exchanges: Exchanges,
    aiohttp_client: Any,
    dynamo: DynamoDBClient,
) -> None:
    # No near-cache: every GET goes to the cluster, many per MGET batch.
    client = await aiohttp_client(create_app(dataclasses.replace(cluster_settings, near_cache_seconds=0)))
    assets = load_symbols(cluster_settings.symbols_file).ordered[:64]
    one_by_one = {}
    for asset in assets:
        response = await client.post(f"/refresh/{asset}")
        assert response.status == 200, await response.text()
        one_by_one[asset] = (await checked(await client.get(f"/prices/{asset}")))["price"]
    together = await asyncio.gather(*(client.get(f"/prices/{asset}") for asset in assets))
    bodies = [await checked(response) for response in together]
    assert {body["asset"]: body["price"] for body in bodies} == one_by_one
    # The buckets spread the keys over every node.
    assert all([await node.dbsize() > 0 for node in node_clients])
    # Each asset has its price and its per-exchange breakdown.
    prices = [key for node in node_clients for key in await node.keys("price:*")]
    sources = [key for node in node_clients for key in await node.keys("sources:*")]
    assert (len(prices), len(sources)) == (len(assets), len(assets))
    ready = await client.get("/ready")
    assert ready.status == 200, await ready.text()
    # Each record went through the outbox stream in its price's slot, and on to DynamoDB.
    streams = {key for node in node_clients for key in await node.keys("history:*:outbox:{*}")}
    assert streams == {
        OutboxKeys(cluster_settings.prices_table, cluster=True).stream(a).encode() for a in assets
    }

    async def every_record_stored() -> bool:
        for asset in assets:
            response = await dynamo.query(
                TableName=cluster_settings.prices_table,
                KeyConditionExpression="asset = :a",
                ExpressionAttributeValues={":a": {"S": asset}},
            )
            if response["Count"] != 1:
                return False
        return True

    await poll(every_record_stored, timeout=20, interval=0.2)


async def test_near_caches_stay_coherent_through_cluster_pubsub(
    cluster_settings: Settings, node_clients: list[redis.Redis], exchanges: Exchanges, aiohttp_client: Any
) -> None:
    # Two instances whose near-caches would keep a copy for an hour: only the update can evict it.
    long_lived = dataclasses.replace(cluster_settings, near_cache_seconds=3600)
    reader = await aiohttp_client(create_app(long_lived))
    writer = await aiohttp_client(create_app(long_lived))
    await poll(lambda: reader.app[PRICE_VIEW].connected, timeout=10)
    now = int(time.time())
    for index in range(3):
        await exchanges.pin(index, {"ethusdt": {"price": 10.0, "volume": 1, "timestamp": now}})
    assert (await writer.post("/refresh/ethusdt")).status == 200
    assert (await checked(await reader.get("/prices/ethusdt")))["price"] == 10.0
    assert (await checked(await reader.get("/prices/ethusdt")))["price"] == 10.0
    assert reader.app[PRICE_VIEW].hits >= 1

    for index in range(3):
        await exchanges.pin(index, {"ethusdt": {"price": 20.0, "volume": 1, "timestamp": now}})
    assert (await writer.post("/refresh/ethusdt")).status == 200

    async def updated() -> bool:
        return bool((await (await reader.get("/prices/ethusdt")).json())["price"] == 20.0)

    await poll(updated, timeout=10)


@pytest.mark.parametrize("shards", [1, 4])
async def test_refresh_shards_are_shared_on_a_cluster_and_taken_over(
    cluster: list[Service], node_clients: Any, shards: int
) -> None:
    clients = [create_redis(cluster[0].url, max_connections=4, timeout=1, cluster=True) for _ in range(2)]
    changes: list[list[frozenset[int]]] = [[], []]

    def recorder(index: int) -> Callable[[frozenset[int]], Awaitable[None]]:
        async def on_change(owned: frozenset[int]) -> None:
            changes[index].append(owned)

        return on_change

    leases = [
        Lease(client, ttl_seconds=1.0, shards=shards, on_change=recorder(i))
        for i, client in enumerate(clients)
    ]
    everything = frozenset(range(shards))
    try:
        for lease in leases:
            lease.start()
        # Every shard owned once; with several shards, half each.
        await poll(lambda: leases[0].owned | leases[1].owned == everything, timeout=10)
        if shards > 1:
            await poll(lambda: len(leases[0].owned) == len(leases[1].owned) == shards // 2, timeout=10)
        assert not leases[0].owned & leases[1].owned
        first = 0 if leases[0].owned else 1
        await leases[first].stop()
        assert changes[first][-1] == frozenset()
        await poll(lambda: leases[1 - first].owned == everything, timeout=10)
        assert changes[1 - first][-1] == everything
    finally:
        for lease in leases:
            await lease.stop()
        for client in clients:
            await client.aclose()


async def test_a_server_on_the_cluster_prices_every_asset(
    cluster_settings: Settings, cluster: list[Service], node_clients: list[redis.Redis], exchanges: Exchanges
) -> None:
    port = free_port()
    env = server_env(cluster_settings, cluster[1].url, port, REDIS_CLUSTER="true", AUTO_REFRESH="true")
    count = len(load_symbols(cluster_settings.symbols_file))

    async def all_cached() -> bool:
        keys = 0
        for node in node_clients:
            keys += sum([1 async for _ in node.scan_iter(match="price:*", count=1000)])
        return keys == count

    with child_server(env):
        async with aiohttp.ClientSession() as session:
            await poll(lambda: answers(session, f"http://127.0.0.1:{port}/ready"), timeout=30)
            await poll(all_cached, timeout=120, interval=0.5)
            async with session.get(f"http://127.0.0.1:{port}/prices/BTCUSDT") as response:
                assert (await checked(response))["stale"] is False
