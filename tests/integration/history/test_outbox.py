"""The durable history outbox with real processes: nothing a GET answered with is lost when any
aggserver process is killed with SIGKILL, while DynamoDB hangs, or across a restart of Redis.

Each test that stops DynamoDB (SIGSTOP) runs its own DynamoDB-compatible server, so the pause
touches nothing else. Servers and writers run as ``aggserver`` child processes in their own
session, so a "crashed host" is one SIGKILL to the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiobotocore.session import get_session
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.history.outbox import GROUP, OutboxKeys, read_state, stage_records
from aggserver.history.records import HistoryRecord
from aggserver.history.writer import HistoryWriter
from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import Service, free_port, start_dynamo, start_redis
from tests.support import answers, checked, poll, server_env

ASSETS = ("btcusdt", "ethusdt", "solusdt", "bnbusdt")


@pytest.fixture
def own_dynamo() -> Iterator[Service]:
    service = start_dynamo()
    yield service
    with contextlib.suppress(ProcessLookupError):
        service.process.send_signal(signal.SIGCONT)
    service.stop()


@pytest.fixture
def small_symbols(tmp_path: Path) -> Path:
    path = tmp_path / "symbols.csv"
    path.write_text("symbol\n" + "\n".join(ASSETS) + "\n")
    return path


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """An ``aggserver`` command in its own session (its children share its process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "aggserver", *args], env=env, stderr=subprocess.PIPE, start_new_session=True
    )


def kill_group(process: subprocess.Popen[bytes]) -> str:
    """SIGKILL to the process and its children; returns what it logged."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    _, stderr = process.communicate()
    return stderr.decode(errors="replace")


@contextlib.contextmanager
def running(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn(env, *args)
    try:
        yield process
    except BaseException:
        if process.returncode is None:
            print(kill_group(process)[-5000:])  # shown with the failure
        raise
    finally:
        if process.returncode is None:
            kill_group(process)


def refreshing_env(
    settings: Settings, dynamo: Service, port: int, symbols: Path, **extra: str
) -> dict[str, str]:
    """A server that refreshes every asset each second and writes history from its own child."""
    return server_env(
        dataclasses.replace(settings, dynamodb_endpoint=dynamo.url),
        settings.redis_url,
        port,
        SYMBOLS_FILE=str(symbols),
        AUTO_REFRESH="true",
        HOT_ASSETS=str(len(ASSETS)),
        HOT_INTERVAL_SECONDS="1",
        MEDIUM_ASSETS="0",
        HISTORY_WRITER="process",
        HISTORY_CLAIM_IDLE_SECONDS="2",
        HISTORY_FLUSH_SECONDS="5",
        LOG_FORMAT="json",
        **extra,
    )


class Collector:
    """Reads every asset again and again, keeping each aggregate a GET answered with."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.seen: set[tuple[str, int]] = set()

    async def read_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            for asset in ASSETS:
                with contextlib.suppress(aiohttp.ClientError):
                    async with self.session.get(f"{self.base}/prices/{asset}") as response:
                        if response.status == 200:
                            body = await response.json()
                            if not body.get("restored"):
                                self.seen.add((asset, body["last_updated"]))
            await asyncio.sleep(0.05)


async def stored_keys(dynamo: DynamoDBClient, table: str) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    for asset in ASSETS:
        query: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "asset = :a",
            "ExpressionAttributeValues": {":a": {"S": asset}},
        }
        while True:
            response = await dynamo.query(**query)
            keys.update((asset, int(item["timestamp"]["N"])) for item in response["Items"])
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return keys


@contextlib.asynccontextmanager
async def dynamo_at(url: str, settings: Settings) -> AsyncIterator[DynamoDBClient]:
    async with get_session().create_client(
        "dynamodb", region_name=settings.aws_region, endpoint_url=url
    ) as client:
        yield client


async def all_stored(dynamo: DynamoDBClient, table: str, expected: set[tuple[str, int]]) -> bool:
    try:
        return expected <= await stored_keys(dynamo, table)
    except Exception:  # noqa: BLE001 - DynamoDB still coming back; the deadline decides
        return False


async def test_sigkill_of_every_process_while_dynamodb_hangs_loses_nothing(
    settings: Settings, redis_client: redis.Redis, own_dynamo: Service, small_symbols: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = refreshing_env(settings, own_dynamo, port, small_symbols)
    async with aiohttp.ClientSession() as session:
        collector = Collector(session, base)
        with running(env, "serve") as first:
            await poll(lambda: answers(session, f"{base}/prices/{ASSETS[0]}"), timeout=30)
            await collector.read_for(1.5)
            own_dynamo.process.send_signal(signal.SIGSTOP)
            await collector.read_for(10)
            # The host "crashes": the server and its writer die at once, holding what they held.
            kill_group(first)
        during_hang = len(collector.seen)
        own_dynamo.process.send_signal(signal.SIGCONT)
        with running(env, "serve"):
            await poll(lambda: answers(session, f"{base}/prices/{ASSETS[0]}"), timeout=30)
            await collector.read_for(2)
            async with dynamo_at(own_dynamo.url, settings) as dynamo:
                await poll(
                    lambda: all_stored(dynamo, settings.prices_table, collector.seen),
                    timeout=60,
                    interval=0.5,
                )
            status = await checked(await session.get(f"{base}/status"))
    assert during_hang >= 20  # several refreshes of each asset while DynamoDB hung
    assert status["history"]["dropped"] == 0
    assert status["history"]["writer"] == "process"


async def test_a_writer_killed_mid_batch_is_taken_over(
    settings: Settings, redis_client: redis.Redis, own_dynamo: Service
) -> None:
    env = server_env(
        dataclasses.replace(settings, dynamodb_endpoint=own_dynamo.url),
        settings.redis_url,
        0,
        HISTORY_CLAIM_IDLE_SECONDS="1",
        LOG_FORMAT="json",
    )
    keys = OutboxKeys(settings.prices_table)
    records = [
        HistoryRecord(asset=ASSETS[i % 4], timestamp=1_800_000_000 + i, price=1.0 + i, updated_at=1)
        for i in range(200)
    ]
    with running(env, "history-writer") as first:
        await poll(lambda: _writers_alive(redis_client, keys, 1), timeout=20)
        own_dynamo.process.send_signal(signal.SIGSTOP)
        await _append(redis_client, keys, records)
        # The writer has taken entries and is stuck writing them.
        await poll(lambda: _pending(redis_client, keys), timeout=10)
        kill_group(first)
    held = await _pending(redis_client, keys)
    own_dynamo.process.send_signal(signal.SIGCONT)
    with running(env, "history-writer") as second:
        async with dynamo_at(own_dynamo.url, settings) as dynamo:
            expected = {(r.asset, r.timestamp) for r in records}
            await poll(lambda: all_stored(dynamo, settings.prices_table, expected), timeout=30, interval=0.2)
        state = await poll(lambda: _drained(redis_client, keys), timeout=10)
        _stop(second)
    assert held > 0
    assert state.reclaimed >= held
    assert state.dropped == 0


async def test_dynamodb_down_a_minute_backlog_grows_then_drains(
    settings: Settings, redis_client: redis.Redis, own_dynamo: Service, small_symbols: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = refreshing_env(settings, own_dynamo, port, small_symbols)
    async with aiohttp.ClientSession() as session:
        collector = Collector(session, base)
        with running(env, "serve") as server:
            await poll(lambda: answers(session, f"{base}/prices/{ASSETS[0]}"), timeout=30)
            own_dynamo.process.send_signal(signal.SIGSTOP)
            await collector.read_for(60)
            during = (await checked(await session.get(f"{base}/status")))["history"]
            own_dynamo.process.send_signal(signal.SIGCONT)
            async with dynamo_at(own_dynamo.url, settings) as dynamo:
                await poll(
                    lambda: all_stored(dynamo, settings.prices_table, collector.seen),
                    timeout=180,
                    interval=0.5,
                )
                stored = await stored_keys(dynamo, settings.prices_table)

            async def drained() -> Any:
                history = (await checked(await session.get(f"{base}/status")))["history"]
                return history if history["backlog"] == 0 else None

            after = await poll(drained, timeout=30, interval=0.5)
            _stop(server)
    # Four assets a second for a minute, all waiting in Redis while DynamoDB was down.
    assert during["backlog"] >= 100
    assert during["oldest_seconds"] >= 30
    assert during["writers_alive"] == 1
    assert after["dropped"] == 0
    assert collector.seen <= stored
    assert after["written"] >= len(stored)


def writing_server_env(settings: Settings, dynamo: Service, port: int, flush_seconds: int) -> dict[str, str]:
    """A server that refreshes nothing by itself, its history writer a child process."""
    return server_env(
        dataclasses.replace(settings, dynamodb_endpoint=dynamo.url),
        settings.redis_url,
        port,
        AUTO_REFRESH="false",
        HISTORY_WRITER="process",
        HISTORY_FLUSH_SECONDS=str(flush_seconds),
        LOG_FORMAT="json",
    )


def numbered_records(first: int, count: int) -> list[HistoryRecord]:
    return [
        HistoryRecord(asset=ASSETS[i % len(ASSETS)], timestamp=1_800_000_000 + i, price=1.0 + i, updated_at=1)
        for i in range(first, first + count)
    ]


async def writer_stuck_on_paused_dynamo(
    redis_client: redis.Redis, dynamo: Service, keys: OutboxKeys, base: str
) -> list[HistoryRecord]:
    """Pauses DynamoDB once the server's writer is up, lets it take a batch it cannot write, then
    queues more behind it; returns every record queued."""
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{base}/health"), timeout=30)
    await poll(lambda: _writers_alive(redis_client, keys, 1), timeout=20)
    dynamo.process.send_signal(signal.SIGSTOP)
    taken = numbered_records(0, 200)
    await _append(redis_client, keys, taken)
    await poll(lambda: _pending(redis_client, keys), timeout=10)
    queued = numbered_records(200, 300)
    await _append(redis_client, keys, queued)
    return taken + queued


async def test_sigterm_drains_everything_queued_while_dynamodb_was_paused(
    settings: Settings, redis_client: redis.Redis, own_dynamo: Service
) -> None:
    # A drain that only finished the batch in flight would leave the 300 queued behind it.
    port = free_port()
    keys = OutboxKeys(settings.prices_table)
    with running(writing_server_env(settings, own_dynamo, port, flush_seconds=60), "serve") as server:
        records = await writer_stuck_on_paused_dynamo(
            redis_client, own_dynamo, keys, f"http://127.0.0.1:{port}"
        )
        server.send_signal(signal.SIGTERM)
        own_dynamo.process.send_signal(signal.SIGCONT)
        _, stderr = server.communicate(timeout=120)  # a hang detector
        assert server.returncode == 0, stderr.decode()[-2000:]
    async with dynamo_at(own_dynamo.url, settings) as dynamo:
        stored = await stored_keys(dynamo, settings.prices_table)
    assert {(r.asset, r.timestamp) for r in records} <= stored
    assert (await read_state(redis_client, keys)).backlog == 0


async def test_sigterm_with_dynamodb_hung_exits_after_the_flush_time_and_keeps_the_records(
    settings: Settings, redis_client: redis.Redis, own_dynamo: Service
) -> None:
    flush_seconds = 2
    port = free_port()
    keys = OutboxKeys(settings.prices_table)
    env = writing_server_env(settings, own_dynamo, port, flush_seconds=flush_seconds)
    with running(env, "serve") as server:
        records = await writer_stuck_on_paused_dynamo(
            redis_client, own_dynamo, keys, f"http://127.0.0.1:{port}"
        )
        server.send_signal(signal.SIGTERM)
        # The promise: out within HISTORY_FLUSH_SECONDS plus the writer child's own margin
        # (writer_process waits flush + 10 s for it); 30 s more before calling it a hang.
        _, stderr = server.communicate(timeout=flush_seconds + 10 + 30)
        assert server.returncode == 0, stderr.decode()[-2000:]
    assert (await read_state(redis_client, keys)).backlog > 0  # left in the outbox, not lost
    own_dynamo.process.send_signal(signal.SIGCONT)
    with running(env, "history-writer") as writer:
        async with dynamo_at(own_dynamo.url, settings) as dynamo:
            expected = {(r.asset, r.timestamp) for r in records}
            await poll(lambda: all_stored(dynamo, settings.prices_table, expected), timeout=60, interval=0.5)
        _stop(writer)


async def test_records_appended_before_a_redis_restart_are_written_after_it(
    settings: Settings, dynamo: DynamoDBClient, tmp_path: Path
) -> None:
    port = free_port()
    keys = OutboxKeys(settings.prices_table)
    server = start_redis(port, data_dir=tmp_path / "redis")
    records = [
        HistoryRecord(asset="ethusdt", timestamp=1_800_000_000 + i, price=2.0 + i, updated_at=1)
        for i in range(100)
    ]
    try:
        client = redis.Redis.from_url(server.url)
        await _append(client, keys, records)
        await client.aclose()
        server.stop()  # a clean restart: Redis writes out its append-only file
        server = start_redis(port, data_dir=tmp_path / "redis")
        client = redis.Redis.from_url(server.url)
        assert (await read_state(client, keys)).backlog == 100
        writer = HistoryWriter(client, dynamo, settings.prices_table)
        task = asyncio.create_task(writer.run())
        await writer.drain(task, timeout=30)
        await client.aclose()
    finally:
        server.stop()
    stored = await stored_keys(dynamo, settings.prices_table)
    assert {(r.asset, r.timestamp) for r in records} <= stored


async def test_two_instances_and_two_writers_share_one_outbox(
    settings: Settings, redis_client: redis.Redis, dynamo: DynamoDBClient
) -> None:
    ports = [free_port(), free_port()]
    keys = OutboxKeys(settings.prices_table)
    envs = [
        server_env(
            settings,
            settings.redis_url,
            port,
            AUTO_REFRESH="false",
            HISTORY_WRITER="process",
            LOG_FORMAT="json",
        )
        for port in ports
    ]
    symbols = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt", "adausdt", "dogeusdt", "trxusdt"]
    expected: set[tuple[str, int]] = set()
    async with aiohttp.ClientSession() as session:
        with running(envs[0], "serve") as first, running(envs[1], "serve") as second:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base in bases:
                await poll(functools.partial(answers, session, f"{base}/health"), timeout=30)
            await poll(lambda: _writers_alive(redis_client, keys, 2), timeout=20)
            for round_ in range(5):
                for index, symbol in enumerate(symbols):
                    base = bases[(index + round_) % 2]
                    assert (await checked(await session.post(f"{base}/refresh/{symbol}")))["refreshed"]
                    body = await checked(await session.get(f"{base}/prices/{symbol}"))
                    expected.add((symbol, body["last_updated"]))
                    await poll(lambda: _drained(redis_client, keys), timeout=10)
            logs = [_stop(first), _stop(second)]
    written_by = [_written_in(log) for log in logs]
    stored: set[tuple[str, int]] = set()
    for symbol in symbols:
        response = await dynamo.query(
            TableName=settings.prices_table,
            KeyConditionExpression="asset = :a",
            ExpressionAttributeValues={":a": {"S": symbol}},
        )
        stored.update((symbol, int(item["timestamp"]["N"])) for item in response["Items"])
    assert expected <= stored
    assert all(count > 0 for count in written_by), written_by
    assert sum(written_by) >= len(expected)


async def test_records_wait_in_memory_while_redis_is_down_then_reach_the_outbox(
    settings: Settings, dynamo: DynamoDBClient, aiohttp_client: Any, exchanges: Any
) -> None:
    port = free_port()
    server = start_redis(port)
    try:
        app = create_app(dataclasses.replace(settings, redis_url=server.url, redis_timeout_seconds=0.3))
        client = await aiohttp_client(app)
        server.stop()
        for symbol in ("btcusdt", "ethusdt"):
            assert (await client.post(f"/refresh/{symbol}")).status == 200
        status = await checked(await client.get("/status"))
        assert status["history"]["in_memory"] == 2
        server = start_redis(port)
        await poll(
            lambda: _stored_count(dynamo, settings.prices_table, ("btcusdt", "ethusdt"), 2), timeout=20
        )
        status = await checked(await client.get("/status"))
        assert status["history"]["in_memory"] == 0
    finally:
        server.stop()


async def _stored_count(dynamo: DynamoDBClient, table: str, assets: tuple[str, ...], wanted: int) -> bool:
    found = 0
    for asset in assets:
        response = await dynamo.query(
            TableName=table,
            KeyConditionExpression="asset = :a",
            ExpressionAttributeValues={":a": {"S": asset}},
        )
        found += len(response["Items"])
    return found >= wanted


async def _append(client: redis.Redis, keys: OutboxKeys, records: list[HistoryRecord]) -> None:
    async with client.pipeline(transaction=True) as pipe:
        stage_records(pipe, records, keys)
        await pipe.execute()


async def _writers_alive(client: redis.Redis, keys: OutboxKeys, count: int) -> bool:
    return (await read_state(client, keys)).writers_alive >= count


async def _pending(client: redis.Redis, keys: OutboxKeys) -> int:
    try:
        summary = await client.xpending(keys.stream(""), GROUP)
    except redis.ResponseError:
        return 0
    return int(summary["pending"])


async def _drained(client: redis.Redis, keys: OutboxKeys) -> Any:
    state = await read_state(client, keys)
    return state if state.backlog == 0 else None


def _stop(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


def _written_in(log: list[dict[str, Any]]) -> int:
    for line in log:
        found = re.search(r"history writer \S+ stopped: (\d+) written", line["message"])
        if found:
            return int(found.group(1))
    raise AssertionError("the writer did not report how much it wrote")


# Put on the writer's PYTHONPATH: the import of its writer module takes a while (as botocore's
# does on a slow disk) and says when it has begun, so a signal can land inside it for certain.
SLOW_IMPORT = """
import importlib.abc, os, sys, time

class SlowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "aggserver.history.writer_process":
            open(os.environ["SLOW_IMPORT_MARK"], "w").close()
            time.sleep(2)
        return None

sys.meta_path.insert(0, SlowImport())
"""


async def test_a_writer_stopped_while_it_imports_drains_what_is_there_and_exits_cleanly(
    settings: Settings, redis_client: redis.Redis, dynamo_service: Service, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT)
    mark = tmp_path / "importing"
    env = {
        **server_env(settings, settings.redis_url, 0),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "SLOW_IMPORT_MARK": str(mark),
    }
    keys = OutboxKeys(settings.prices_table)
    records = [
        HistoryRecord(asset="btcusdt", timestamp=1_800_000_000 + i, price=1.0, updated_at=1)
        for i in range(60)
    ]
    await _append(redis_client, keys, records)
    writer = subprocess.Popen(
        [sys.executable, "-m", "aggserver", "history-writer"], env=env, stderr=subprocess.PIPE
    )
    try:
        await poll(mark.exists, timeout=20)
        # Inside the import: SIGTERM's default action would end the writer with nothing drained.
        writer.send_signal(signal.SIGTERM)
        _, stderr = writer.communicate(timeout=60)
    finally:
        if writer.returncode is None:
            writer.kill()
            writer.communicate()
    assert writer.returncode == 0, stderr.decode()[-2000:]
    async with dynamo_at(dynamo_service.url, settings) as dynamo:
        expected = {(r.asset, r.timestamp) for r in records}
        assert await all_stored(dynamo, settings.prices_table, expected)
