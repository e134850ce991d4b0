"""Several real server processes on one Redis: workers sharing a port, instances sharing the
refresh work through the lease, and a takeover when the lease holder dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from aggserver.domain.symbols import load_symbols
from aggserver.settings import Settings
from aggserver.store.lease import LEASE_KEY
from devstack.services import Service, free_port
from tests.support import Exchanges, answers, cached_prices, poll, server_env

SYMBOL_COUNT = len(load_symbols(Settings().symbols_file))


class Servers:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "aggserver", "serve", *args], env=env)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers()
    yield started
    started.stop()


async def test_workers_share_one_port_and_stop_cleanly_on_sigterm(
    settings: Settings,
    redis_service: Service,
    redis_client: redis.Redis,
    exchanges: Exchanges,
    servers: Servers,
) -> None:
    port = free_port()
    supervisor = servers.start(
        server_env(settings, redis_service.url, port, LOG_LEVEL="WARNING", AUTO_REFRESH="false"),
        "--workers",
        "2",
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{base}/health"), timeout=30)
        async with session.post(f"{base}/refresh/btcusdt") as response:
            assert response.status == 200
        # Fresh connections land on either worker; both read the same Redis.
        for _ in range(20):
            async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/prices/btcusdt") as response:
                assert response.status == 200
    children = _children(supervisor.pid)
    # Two workers, and one history writer for both (HISTORY_WRITER=process).
    assert sorted(_aggserver_command(pid) for pid in children) == ["history-writer", "serve", "serve"]

    # A worker and the writer killed: the supervisor starts others in their place.
    killed = [pid for pid in children if _aggserver_command(pid) == "serve"][:1]
    killed += [pid for pid in children if _aggserver_command(pid) == "history-writer"]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    def replaced() -> list[int] | None:
        now = _children(supervisor.pid)
        commands = sorted(_aggserver_command(pid) for pid in now if _exists(pid))
        fresh = not set(killed) & set(now)
        return now if fresh and commands == ["history-writer", "serve", "serve"] else None

    children = await poll(replaced, timeout=30, interval=0.2)
    async with aiohttp.ClientSession() as session:
        await poll(lambda: answers(session, f"{base}/health"), timeout=30)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not [pid for pid in children if _exists(pid)]


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


def _aggserver_command(pid: int) -> str:
    """Which aggserver command ``pid`` runs; "" for a process that is exiting (or gone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return ""
    return argv[argv.index("aggserver") + 1] if "aggserver" in argv else ""


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_refresh_work_is_done_once_and_taken_over_when_the_holder_dies(
    settings: Settings,
    redis_service: Service,
    redis_client: redis.Redis,
    exchanges: Exchanges,
    servers: Servers,
) -> None:
    fast = {
        "HOT_INTERVAL_SECONDS": "0.5",
        "MEDIUM_INTERVAL_SECONDS": "1",
        "COLD_INTERVAL_SECONDS": "4",
        "LEASE_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }
    ports = [free_port() for _ in range(3)]
    processes = {
        servers.start(server_env(settings, redis_service.url, port, **fast)).pid: port for port in ports
    }
    await poll(lambda: redis_client.exists(LEASE_KEY), timeout=30)
    await poll(lambda: _all_cached(redis_client), timeout=60, interval=0.2)

    # Quotes served in a window: one instance's schedule is 10,000 assets per 4 s per exchange.
    before = await exchanges.total_served(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(4)
    served = await exchanges.total_served(0) - before
    one_instance = SYMBOL_COUNT / 4 * (loop.time() - started)
    assert served < 1.5 * one_instance, (served, one_instance)

    holder = _text(await redis_client.get(LEASE_KEY))
    holder_pid = int(holder.split(":")[1])
    assert holder_pid in processes
    os.kill(holder_pid, signal.SIGKILL)
    new_holder = await poll(lambda: _holder_other_than(redis_client, holder), timeout=15, interval=0.1)
    assert int(new_holder.split(":")[1]) in set(processes) - {holder_pid}

    # The successor keeps every price fresh: read all of them through a survivor.
    survivor = processes[int(new_holder.split(":")[1])]
    await poll(lambda: _none_stale(f"http://127.0.0.1:{survivor}"), timeout=30, interval=0.5)


async def _all_cached(client: redis.Redis) -> bool:
    return await cached_prices(client) >= SYMBOL_COUNT


async def _holder_other_than(client: redis.Redis, old: str) -> str | None:
    current = await client.get(LEASE_KEY)
    holder = None if current is None else _text(current)
    return holder if holder != old else None


def _text(value: bytes | str | None) -> str:
    assert isinstance(value, bytes), value
    return value.decode()


async def _none_stale(base: str) -> bool:
    symbols = load_symbols(Settings().symbols_file).ordered
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

        async def fresh(asset: str) -> bool:
            async with session.get(f"{base}/prices/{asset}") as response:
                body: dict[str, Any] = await response.json()
                return response.status == 200 and body["stale"] is False

        results = await asyncio.gather(*(fresh(a) for a in symbols[::10]))
    return all(results)
