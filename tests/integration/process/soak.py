"""The fault runner: steady load at a real local stack while one fault at a time is injected.

Used by tests/integration/process/test_soak.py (a short run in the test command, the long one behind
``-m soak``) and runnable alone for RELIABILITY.md:
``.venv/bin/python -m tests.integration.process.soak --long --json out.json``.

For each fault it reports requests sent and answered (2xx / 4xx / 5xx / no answer), the p99
latency while the fault lasts, the time from healing to the first second of nothing but 2xx,
and the history check: every aggregate a GET answered with (asset, last_updated; not restored),
from the fault's start to the next fault's, must be in DynamoDB once the server has shut down
and flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from devstack.services import (
    DUMMY_AWS_ENV,
    Service,
    free_port,
    local_dynamo_client,
    start_dynamo,
    start_mockex,
    start_redis,
)

__all__ = ["FaultReport", "Stack", "run_faults"]

ASSETS_FOLLOWED = 40  # the hot tier and some medium ones: all refreshed every few seconds
LOAD_PER_SECOND = 200
TABLE = "prices"


@dataclass
class FaultReport:
    fault: str
    seconds: float
    sent: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    no_answer: int = 0
    p99_during_ms: float = 0.0
    recovery_seconds: float | None = None
    history_expected: int = 0
    history_found: int = 0


@dataclass
class Sample:
    started: float
    latency: float
    status: int  # 0: no answer (refused, reset, timed out)
    asset: str = ""
    last_updated: int = 0


@dataclass
class Stack:
    """Redis, a DynamoDB-compatible server keeping its files, three mock exchanges, aggserver."""

    workdir: Path
    redis: Service | None = None
    dynamo: Service | None = None
    exchanges: list[Service] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    redis_port: int = 0
    dynamo_port: int = 0
    port: int = 0
    log_path: Path | None = None

    def start(self) -> None:
        # With its append-only file, as the README asks of a deployment: the outbox survives it.
        self.redis = start_redis(data_dir=self.workdir / "redis")
        self.redis_port = int(self.redis.url.rsplit(":", 1)[1].split("/")[0])
        self.dynamo_port = free_port()
        self.dynamo = start_dynamo(self.dynamo_port, path=self.workdir / "dynamo")
        self.exchanges = [start_mockex(name=f"exchange{i}") for i in (1, 2, 3)]
        self.port = free_port()
        self.start_server()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return {
            **os.environ,
            **DUMMY_AWS_ENV,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "REDIS_URL": self.redis.url,
            "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{self.dynamo_port}",
            "EXCHANGE_URLS": ",".join(f"{e.url}/mock/ticker" for e in self.exchanges),
            "PRICES_TABLE": TABLE,
            "HOT_ASSETS": "20",
            "HOT_INTERVAL_SECONDS": "2",
            "MEDIUM_ASSETS": "20",
            "MEDIUM_INTERVAL_SECONDS": "4",
            "COLD_INTERVAL_SECONDS": "300",
            "REDIS_TIMEOUT_SECONDS": "0.5",
            "EXCHANGE_TIMEOUT_SECONDS": "1",
            "HISTORY_FLUSH_SECONDS": "120",
            "HISTORY_CLAIM_IDLE_SECONDS": "5",
            "REFRESH_MIN_INTERVAL_SECONDS": "0",
            "REFRESH_RATE_LIMIT": "0",
            "LOG_FORMAT": "json",
        }

    def start_server(self) -> None:
        self.log_path = self.workdir / f"server-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            # Its own session: the server and its history writer can be killed together.
            self.server = subprocess.Popen(
                [sys.executable, "-m", "aggserver", "serve"],
                env=self.env(),
                stderr=log,
                stdout=log,
                start_new_session=True,
            )

    def stop_server(self) -> int:
        assert self.server is not None
        self.server.send_signal(signal.SIGTERM)
        return self.server.wait(timeout=180)

    def kill_server(self) -> None:
        """SIGKILL to the server and its history writer at once, as a crashed host would."""
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()

    def writer_pid(self) -> int:
        """The server's history writer child."""
        assert self.server is not None
        children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children").read_text().split()
        for pid in children:
            if b"history-writer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
        raise RuntimeError("the server has no history writer child")

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.redis = start_redis(self.redis_port, data_dir=self.workdir / "redis")

    def restart_dynamo(self) -> None:
        self.dynamo = start_dynamo(self.dynamo_port, path=self.workdir / "dynamo")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.kill_server()
        for service in [self.redis, self.dynamo, *self.exchanges]:
            if service is not None:
                service.stop()


class Load:
    """Steady GETs of the followed assets; every answer is kept as a Sample."""

    def __init__(self, base: str, assets: list[str], rate: int) -> None:
        self._base = base
        self._assets = assets
        self._rate = rate
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Load:
        connector = aiohttp.TCPConnector(limit=200)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5))
        self._task = asyncio.create_task(self._drive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._session.close()

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(7)
        interval = 1 / self._rate
        next_at = loop.time()
        while True:
            task = asyncio.create_task(self._one(rng.choice(self._assets)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _one(self, asset: str) -> None:
        started = time.monotonic()
        sample = Sample(started=started, latency=0.0, status=0, asset=asset)
        try:
            async with self._session.get(f"{self._base}/prices/{asset}") as response:
                body = await response.read()
                sample.status = response.status
                if response.status == 200:
                    fields = json.loads(body)
                    if not fields.get("restored"):
                        sample.last_updated = int(fields["last_updated"])
        except (aiohttp.ClientError, TimeoutError, ValueError):
            sample.status = 0
        sample.latency = time.monotonic() - started
        self.samples.append(sample)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end]

    async def recovered_after(self, healed: float, *, timeout: float = 60) -> float | None:
        """Seconds from ``healed`` to the start of the first full second of only 2xx answers.

        A one-second window is judged once (nearly) all of its requests have been answered.
        """
        edge = healed
        while edge < healed + timeout:
            await asyncio.sleep(0.25)
            while True:
                batch = self.between(edge, edge + 1.0)
                if len(batch) < 0.8 * self._rate:
                    break  # answers still arriving
                if all(s.status == 200 for s in batch):
                    return edge - healed
                edge += 0.25
        return None


def _summarise(report: FaultReport, samples: list[Sample]) -> None:
    report.sent = len(samples)
    report.ok = sum(1 for s in samples if 200 <= s.status < 300)
    report.client_errors = sum(1 for s in samples if 400 <= s.status < 500)
    report.server_errors = sum(1 for s in samples if s.status >= 500)
    report.no_answer = sum(1 for s in samples if s.status == 0)
    latencies = [s.latency for s in samples if s.status]
    if len(latencies) > 1:
        report.p99_during_ms = statistics.quantiles(latencies, n=100)[98] * 1000


Fault = Callable[["Stack"], Awaitable[None]]


async def _kill_redis(stack: Stack) -> None:
    assert stack.redis is not None
    stack.redis.process.kill()
    stack.redis.process.wait()


async def _restart_redis(stack: Stack) -> None:
    stack.restart_redis()


async def _pause_redis(stack: Stack) -> None:
    assert stack.redis is not None
    stack.redis.process.send_signal(signal.SIGSTOP)


async def _resume_redis(stack: Stack) -> None:
    assert stack.redis is not None
    stack.redis.process.send_signal(signal.SIGCONT)


async def _kill_dynamo(stack: Stack) -> None:
    assert stack.dynamo is not None
    stack.dynamo.process.kill()
    stack.dynamo.process.wait()


async def _restart_dynamo(stack: Stack) -> None:
    stack.restart_dynamo()


async def _pause_dynamo(stack: Stack) -> None:
    assert stack.dynamo is not None
    stack.dynamo.process.send_signal(signal.SIGSTOP)


def _set_exchange_faults(indexes: list[int], **settings: Any) -> Fault:
    async def apply(stack: Stack) -> None:
        async with aiohttp.ClientSession() as session:
            for index in indexes:
                url = f"{stack.exchanges[index].url}/mock/admin/faults"
                async with session.post(url, json=settings) as response:
                    response.raise_for_status()

    return apply


async def _sigterm_server(stack: Stack) -> None:
    code = stack.stop_server()
    if code != 0:
        raise RuntimeError(f"aggserver exited with {code} on SIGTERM")


async def _start_server(stack: Stack) -> None:
    stack.start_server()


async def _kill_server(stack: Stack) -> None:
    stack.kill_server()


async def _kill_writer(stack: Stack) -> None:
    os.kill(stack.writer_pid(), signal.SIGKILL)


async def _nothing(stack: Stack) -> None:
    pass


async def _kill_server_while_dynamo_hangs(stack: Stack) -> None:
    assert stack.dynamo is not None
    stack.kill_server()
    stack.dynamo.process.send_signal(signal.SIGCONT)
    stack.start_server()


def faults(scale: float) -> list[tuple[str, float, Fault, Fault]]:
    """(name, duration, inject, heal) for each fault; ``scale`` stretches the durations."""
    healthy = _set_exchange_faults([0, 1, 2], mode="ok")
    return [
        ("redis killed, restarted", 3 * scale, _kill_redis, _restart_redis),
        ("redis paused (SIGSTOP) past its timeout", 3 * scale, _pause_redis, _resume_redis),
        ("dynamodb killed, restarted", 10 * scale, _kill_dynamo, _restart_dynamo),
        ("one exchange down", 4 * scale, _set_exchange_faults([2], mode="down"), healthy),
        (
            "one exchange slow (3 s)",
            4 * scale,
            _set_exchange_faults([1], mode="slow", latency_ms=3000),
            healthy,
        ),
        ("all exchanges down", 4 * scale, _set_exchange_faults([0, 1, 2], mode="down"), healthy),
        ("aggserver SIGTERM, restarted", 2 * scale, _sigterm_server, _start_server),
        ("history writer SIGKILL (the server starts another)", 2 * scale, _kill_writer, _nothing),
        ("aggserver and its writer SIGKILL, restarted", 2 * scale, _kill_server, _start_server),
        (
            "dynamodb paused (SIGSTOP), then aggserver and its writer SIGKILL, restarted",
            4 * scale,
            _pause_dynamo,
            _kill_server_while_dynamo_hangs,
        ),
    ]


async def _wait_serving(base: str, asset: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/prices/{asset}") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"aggserver did not serve {asset} within {timeout} s")


async def _wait_outbox_current(base: str, timeout: float = 60) -> None:
    """Until the outbox holds nothing older than a couple of seconds."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/status") as response:
                history = (await response.json())["history"]
            if history["oldest_seconds"] is None or history["oldest_seconds"] < 2:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the history outbox still held old records after {timeout} s")


def _in_dynamodb(stack: Stack, keys: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of ``keys`` (asset, timestamp) the table holds."""
    client = local_dynamo_client(f"http://127.0.0.1:{stack.dynamo_port}")
    found: set[tuple[str, int]] = set()
    ordered = sorted(keys)
    for start in range(0, len(ordered), 100):
        chunk = ordered[start : start + 100]
        request: dict[str, Any] = {
            TABLE: {"Keys": [{"asset": {"S": a}, "timestamp": {"N": str(t)}} for a, t in chunk]}
        }
        while request:
            answer = client.batch_get_item(RequestItems=request)
            found.update(
                (item["asset"]["S"], int(item["timestamp"]["N"]))
                for item in answer["Responses"].get(TABLE, [])
            )
            request = answer.get("UnprocessedKeys") or {}
    return found


async def run_faults(
    stack: Stack, *, scale: float, settle: float, only: list[str] | None = None
) -> list[FaultReport]:
    assets = list(load_symbols(DEFAULT_SYMBOLS_FILE).ordered[:ASSETS_FOLLOWED])
    await _wait_serving(stack.base, assets[0])
    reports: list[FaultReport] = []
    # Each fault's share of the history check: what GETs answered from its start to the next's
    # (the first fault's share also holds what came before it).
    windows: list[tuple[FaultReport, float]] = []
    async with Load(stack.base, assets, LOAD_PER_SECOND) as load:
        await asyncio.sleep(settle)
        for name, seconds, inject, heal in faults(scale):
            if only and not any(word in name for word in only):
                continue
            report = FaultReport(fault=name, seconds=seconds)
            start = time.monotonic()
            windows.append((report, start))
            await inject(stack)
            await asyncio.sleep(seconds)
            healed = time.monotonic()
            await heal(stack)
            report.recovery_seconds = await load.recovered_after(healed)
            _summarise(report, load.between(start, healed))
            reports.append(report)
            await asyncio.sleep(settle)
    # Everything the server answered with must be in DynamoDB once it has flushed. Entries a
    # killed writer held are taken over once idle for HISTORY_CLAIM_IDLE_SECONDS: wait for that
    # before the final SIGTERM (the outbox would keep them for the next writer, but we count now).
    await _wait_outbox_current(stack.base)
    stack.stop_server()
    answered = [s for s in load.samples if s.status == 200 and s.last_updated]
    found = _in_dynamodb(stack, {(s.asset, s.last_updated) for s in answered})
    ends = [start for _, start in windows[1:]] + [float("inf")]
    starts = [float("-inf")] + [start for _, start in windows[1:]]  # the first from the load's start
    for (report, _), start, end in zip(windows, starts, ends, strict=True):
        expected = {(s.asset, s.last_updated) for s in answered if start <= s.started < end}
        report.history_expected, report.history_found = len(expected), len(expected & found)
    return reports


def print_table(reports: list[FaultReport]) -> None:
    print(
        "| fault | seconds | sent | 2xx | 4xx | 5xx | no answer | p99 during (ms) | recovered after (s) "
        "| history found / expected |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in reports:
        recovered = "—" if r.recovery_seconds is None else f"{r.recovery_seconds:.2f}"
        print(
            f"| {r.fault} | {r.seconds:g} | {r.sent:,} | {r.ok:,} | {r.client_errors:,} | "
            f"{r.server_errors:,} | {r.no_answer:,} | {r.p99_during_ms:.0f} | {recovered} | "
            f"{r.history_found:,} / {r.history_expected:,} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.process.soak", description=__doc__)
    parser.add_argument("--long", action="store_true", help="RELIABILITY.md durations (DynamoDB down 30 s)")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args(argv)
    scale = 3.0 if args.long else 1.0
    with tempfile.TemporaryDirectory(prefix="aggserver-soak-") as workdir:
        stack = Stack(Path(workdir))
        try:
            stack.start()
            reports = uvloop.run(run_faults(stack, scale=scale, settle=5.0 if args.long else 2.0))
        finally:
            stack.stop()
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2))


if __name__ == "__main__":
    main()
