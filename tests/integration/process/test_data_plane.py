"""The data plane apart from the serving plane (DATA_PLANE=process): the server's own loop holds
no refresh work, its ``aggserver ingest`` child keeps every price fresh, and when that child is
SIGKILLed readers keep answering and prices are fresh again within the lease and a round."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as redis

from aggserver.settings import Settings
from devstack.services import Service, free_port
from tests.support import Exchanges, answers, checked, child_server, poll, server_env

LEASE_SECONDS = 2


async def status_of(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/status") as response:
        body: dict[str, Any] = await checked(response)
        return body


async def updated_at(client: redis.Redis, asset: str) -> int | None:
    raw = await client.get(f"price:{asset}")
    return None if raw is None else int(orjson.loads(raw)["updated_at"])


async def test_the_data_plane_child_refreshes_and_is_replaced_after_a_sigkill(
    settings: Settings, redis_service: Service, redis_client: redis.Redis, exchanges: Exchanges
) -> None:
    port = free_port()
    env = server_env(
        settings,
        redis_service.url,
        port,
        DATA_PLANE="process",
        AUTO_REFRESH="true",
        HOT_INTERVAL_SECONDS="1",
        LEASE_SECONDS=str(LEASE_SECONDS),
        HISTORY_WRITER="inline",
        LOG_LEVEL="WARNING",
    )
    base = f"http://127.0.0.1:{port}"
    with child_server(env):
        async with aiohttp.ClientSession() as session:
            await poll(lambda: answers(session, f"{base}/health"), timeout=30)
            status = await status_of(session, base)
            refresh = status["refresh"]
            assert refresh["data_plane"] == "process"
            assert refresh["runs_scheduler"] is False  # the serving process holds no refresh work
            first_child = refresh["data_plane_pid"]
            assert isinstance(first_child, int)
            # The child prices without a single request to the server.
            await poll(lambda: updated_at(redis_client, "btcusdt"), timeout=30)

            os.kill(first_child, signal.SIGKILL)
            killed_at = int(time.time())

            # Readers answer throughout; the next child takes the lease once the dead one's expires.
            async def fresh_again() -> bool:
                async with session.get(f"{base}/prices/btcusdt") as response:
                    assert response.status == 200
                stamp = await updated_at(redis_client, "btcusdt")
                return stamp is not None and stamp > killed_at + 1

            started = time.monotonic()
            await poll(fresh_again, timeout=LEASE_SECONDS + 20, interval=0.2)
            took = time.monotonic() - started
            status = await status_of(session, base)
            assert status["refresh"]["data_plane_pid"] not in (None, first_child)
            assert took < LEASE_SECONDS + 15, took


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children_running(parent: int, command: str) -> list[int]:
    """Pids of the live children of ``parent`` whose command line holds ``command``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] == str(parent) and fields[0] != "Z" and command.encode() in cmdline:
            found.append(int(stat.parent.name))
    return found


async def test_workers_share_one_data_plane_and_stop_with_it(
    settings: Settings, redis_service: Service, redis_client: redis.Redis, exchanges: Exchanges
) -> None:
    port = free_port()
    env = server_env(
        settings, redis_service.url, port, DATA_PLANE="process", AUTO_REFRESH="true", LOG_LEVEL="WARNING"
    )
    base = f"http://127.0.0.1:{port}"
    with child_server(env, "--workers", "2") as supervisor:
        async with aiohttp.ClientSession() as session:
            await poll(lambda: answers(session, f"{base}/health"), timeout=30)
            await poll(lambda: updated_at(redis_client, "btcusdt"), timeout=30)
            for _ in range(10):  # fresh connections land on either worker: both only serve
                refresh = (await status_of(session, base))["refresh"]
                assert (refresh["data_plane"], refresh["runs_scheduler"]) == ("external", False)
        planes = children_running(supervisor.pid, "ingest")
        assert len(planes) == 1
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    assert not alive(planes[0])
