"""Helpers the tests share: mock-exchange admin, polling with a deadline, the OpenAPI check."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import IO, Any

import yaml
from aiohttp import ClientError, ClientResponse, ClientSession
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator
from types_aiobotocore_dynamodb import DynamoDBClient

import bench.runner
from aggserver.history.dynamo import ensure_table
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import ensure_rollup_table
from aggserver.settings import READ_BY_HAND, Settings
from devstack.services import Service, start_mockex
from tests.paths import REPO_ROOT

SPEC_PATH = REPO_ROOT / "openapi.yaml"
SPEC = OpenAPI.from_file_path(str(SPEC_PATH))
_COMPONENTS = yaml.safe_load(SPEC_PATH.read_text())["components"]


def _component_validator(ref: str) -> OAS31Validator:
    return OAS31Validator({"$ref": ref, "components": _COMPONENTS})


# Answers for paths or methods the API does not have still follow the documented error shapes.
_UNROUTED = {
    405: _component_validator("#/components/responses/MethodNotAllowed/content/application~1json/schema"),
}
_ERROR = _component_validator("#/components/schemas/Error")
_PRICE = _component_validator("#/components/schemas/Price")


def valid_price(data: bytes | str) -> dict[str, Any]:
    """A streamed price event's JSON, after checking it against the Price schema."""
    body: dict[str, Any] = json.loads(data)
    _PRICE.validate(body)
    return body


async def sse_events(response: ClientResponse) -> AsyncIterator[dict[str, str]]:
    """The events of a text/event-stream answer as field dicts; a comment line comes as
    {"comment": text}. Ends when the server closes the stream."""
    assert response.content_type == "text/event-stream", response.content_type
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


class Exchanges:
    """Drives the mock exchanges' admin endpoints: faults, pinned quotes, traffic counts."""

    def __init__(self, session: ClientSession, services: list[Service]) -> None:
        self.session = session
        self.urls = [s.url for s in services]

    @property
    def ticker_urls(self) -> tuple[str, ...]:
        return tuple(f"{url}/mock/ticker" for url in self.urls)

    async def _call(self, method: str, index: int, path: str, body: Any = None) -> Any:
        async with self.session.request(method, f"{self.urls[index]}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def set_faults(self, index: int, **faults: Any) -> None:
        await self._call("POST", index, "/mock/admin/faults", faults)

    async def pin(self, index: int, quotes: dict[str, dict[str, float]]) -> None:
        await self._call("POST", index, "/mock/admin/quotes", quotes)

    async def pin_prices(self, asset: str, prices: list[float], *, timestamp: int) -> None:
        """Exchange ``i`` quotes ``asset`` at ``prices[i]`` (volume 1) as of ``timestamp``."""
        for index, price in enumerate(prices):
            await self.pin(index, {asset: {"price": price, "volume": 1.0, "timestamp": timestamp}})

    async def list_exactly(self, index: int, symbols: Sequence[str]) -> None:
        """Venue-format exchange ``index`` lists exactly ``symbols`` from now on."""
        await self._call("POST", index, "/mock/admin/listing", {"symbols": list(symbols)})

    async def depeg(self, index: int, **values: float | None) -> None:
        """Exchange ``index`` values these stablecoins at these dollars (None: back to 1)."""
        await self._call("POST", index, "/mock/admin/pegs", values)

    async def total_served(self, index: int) -> int:
        """Quotes exchange ``index`` served since the last reset, all symbols together."""
        stats = await self._call("GET", index, "/mock/admin/stats")
        return int(stats["requests"])

    async def http_requests(self, index: int) -> int:
        """HTTP requests a venue-format exchange received since the last reset."""
        stats = await self._call("GET", index, "/mock/admin/stats")
        return int(stats["http_requests"])

    async def idle(self, index: int) -> bool:
        """Whether exchange ``index`` is answering no quote request (abandoned ones included)."""
        stats = await self._call("GET", index, "/mock/admin/stats")
        return int(stats["in_flight"]) == 0

    async def most_in_flight(self, index: int) -> int:
        """The most quote requests exchange ``index`` was answering at once since the last reset."""
        stats = await self._call("GET", index, "/mock/admin/stats")
        return int(stats["most_in_flight"])

    async def served_more_than(self, index: int, symbol: str, count: int) -> bool:
        return await self.served(index, symbol) > count

    async def served(self, index: int, symbol: str) -> int:
        stats = await self._call("GET", index, "/mock/admin/stats")
        return int(stats["by_symbol"].get(symbol, 0))

    async def reset_stats(self, index: int) -> None:
        await self._call("DELETE", index, "/mock/admin/stats")

    async def reset(self) -> None:
        for index in range(len(self.urls)):
            await self._call("POST", index, "/mock/admin/faults", {"mode": "ok"})
            await self._call("DELETE", index, "/mock/admin/quotes")
            await self._call("DELETE", index, "/mock/admin/pegs")
            await self._call("DELETE", index, "/mock/admin/stats")


async def poll(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def command_calls(client: Any, command: str) -> int:
    """How many times Redis has run ``command`` (its commandstats)."""
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def cached_prices(client: Any) -> int:
    """How many prices a (non-cluster) Redis holds; each also has its ``sources:`` breakdown."""
    return len(await client.keys("price:*"))


async def answers(session: ClientSession, url: str) -> bool:
    """Whether ``url`` answers 200 now (False while the server is not up yet)."""
    try:
        async with session.get(url) as response:
            return response.status == 200
    except ClientError:
        return False


def venue_settings(settings: Settings, venues: dict[str, Service], **extra: str) -> Settings:
    """Settings for an app pricing from venue-format mocks (``venue -> service``), on the test's
    Redis and DynamoDB with a table of its own; scheduled refresh off and the universe from the
    symbols file (the venue tests pin file-mode behaviour) unless ``extra`` says."""
    return Settings.from_env(
        {
            "REDIS_URL": settings.redis_url,
            "AWS_ENDPOINT_URL_DYNAMODB": settings.dynamodb_endpoint or "",
            "PRICES_TABLE": f"prices-{uuid.uuid4().hex[:12]}",
            "EXCHANGES": ",".join(f"{venue}={service.url}" for venue, service in venues.items()),
            "EXCHANGE_TIMEOUT_SECONDS": "1",
            "AUTO_REFRESH": "false",
            "REFRESH_MIN_INTERVAL_SECONDS": "0",
            "REFRESH_RATE_LIMIT": "0",
            "HISTORY_WRITER": "inline",
            "DATA_PLANE": "inline",
            "UNIVERSE": "file",
            **extra,
        }
    )


def server_env(settings: Settings, redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment for an ``aggserver serve`` child process using the test's backends: the
    benchmark's (bench.runner.server_env) without its production preset, the test's settings
    in its place."""
    test_settings = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "EXCHANGE_URLS": ",".join(settings.exchange_urls),
        "PRICES_TABLE": settings.prices_table,
        "REFRESH_MIN_INTERVAL_SECONDS": str(settings.refresh_min_interval_seconds),
        "REFRESH_RATE_LIMIT": str(settings.refresh_rate_limit),
        # Lease and takeover tests watch the serve processes themselves do the refresh work.
        "DATA_PLANE": "inline",
    }
    no_preset: dict[str, str] = {}
    return bench.runner.server_env(
        redis_url, settings.dynamodb_endpoint or "", [], no_preset, **{**test_settings, **extra}
    )


@contextlib.contextmanager
def child_server(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``aggserver serve`` in a child process, its stderr kept in a file (a pipe nobody reads
    while the test runs would fill and block the server's logging); killed if the test leaves
    it running."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "aggserver", "serve", *args], env=env, stderr=log)
        _LOGS[process.pid] = log
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            del _LOGS[process.pid]


_LOGS: dict[int, IO[bytes]] = {}


def stop_with(process: subprocess.Popen[bytes], signum: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Send ``signum`` to a :func:`child_server`, wait for the exit, and return its JSON log
    lines (LOG_FORMAT=json)."""
    process.send_signal(signum)
    process.wait(timeout=timeout)
    log = _LOGS[process.pid]
    log.seek(0)
    return [json.loads(line) for line in log.read().decode().splitlines()]


async def checked(response: ClientResponse) -> Any:
    """The decoded JSON body of ``response`` after checking it against openapi.yaml."""
    body = await response.read()
    assert response.content_type == "application/json", response.content_type
    url = response.request_info.url
    # The raw path: an encoded slash stays inside its segment, as the server saw it.
    request = MockRequest(f"{url.scheme}://{url.host}:{url.port}", response.method.lower(), url.raw_path)
    try:
        SPEC.validate_response(request, MockResponse(body, status_code=response.status))
    except (PathNotFound, OperationNotFound):
        assert response.status in (404, 405), f"{response.method} {url.path} is not in openapi.yaml"
        _UNROUTED.get(response.status, _ERROR).validate(await response.json())
    return await response.json()


def setting_variables() -> set[str]:
    """Every environment variable Settings reads: each declared field's name in capitals, and
    the names the fields read by hand (``READ_BY_HAND``) look up in settings.py."""
    source = (REPO_ROOT / "aggserver" / "settings.py").read_text()
    declared = {f.name.upper() for f in dataclasses.fields(Settings) if f.name not in READ_BY_HAND}
    return declared | set(re.findall(r'env(?:\.get\(|\[|, )"([A-Z][A-Z0-9_]+)"', source))


@contextlib.contextmanager
def stopped_after(services: list[Service]) -> Iterator[list[Service]]:
    """``services`` for a (module-scoped) fixture to yield, each stopped when it is done."""
    try:
        yield services
    finally:
        for service in services:
            service.stop()


@contextlib.asynccontextmanager
async def exchange_admin(services: list[Service]) -> AsyncIterator[Exchanges]:
    """An :class:`Exchanges` on ``services``, their faults, pins and pegs reset before and after."""
    async with ClientSession() as session:
        admin = Exchanges(session, services)
        await admin.reset()
        try:
            yield admin
        finally:
            await admin.reset()


def start_venue_mocks(listed: Mapping[str, int | Sequence[str]]) -> list[Service]:
    """mockex venue personalities (venue -> symbols listed), one market for all (seed 7); each
    started one is stopped again if a later one fails to start."""
    services: list[Service] = []
    try:
        for venue, symbols in listed.items():
            services.append(start_mockex(name=venue, venue=venue, listed=symbols, seed=7))
    except BaseException:
        for service in services:
            service.stop()
        raise
    return services


def record(timestamp: int, price: float, asset: str = "btcusdt") -> HistoryRecord:
    """A history record as aggserver's writer stores it, a second after its price."""
    return HistoryRecord(asset=asset, timestamp=timestamp, price=price, updated_at=timestamp + 1)


async def store(dynamo: DynamoDBClient, table: str, records: list[HistoryRecord]) -> None:
    """Write ``records`` straight into ``table`` (and make it and its rollup table first)."""
    await ensure_table(dynamo, table)
    await ensure_rollup_table(dynamo, table)
    for start in range(0, len(records), 25):
        await dynamo.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": r.to_item()}} for r in records[start : start + 25]]}
        )
