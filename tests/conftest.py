"""Real backing services for the tests: redis-server, a DynamoDB-compatible server and three
mock exchanges, each a child process on a free port, started once per test session. Every test
gets a fresh app, an empty Redis database, its own DynamoDB table and well-behaved exchanges.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as redis
import uvloop
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient
from aiohttp.web import Application
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import DUMMY_AWS_ENV, Service, start_dynamo, start_mockex, start_redis
from tests.support import Exchanges, exchange_admin, stopped_after

MARKET_SEED = 7

os.environ.update(DUMMY_AWS_ENV)


# On CI machines (slower, shared) an example's time says nothing about the code: no deadline.
hypothesis_settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
if os.environ.get("CI", "").lower() == "true":
    hypothesis_settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (the long soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_asyncio_loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    # The server runs on uvloop in production, so the tests do too.
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def dynamo_service() -> Iterator[Service]:
    service = start_dynamo()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def exchange_services() -> Iterator[list[Service]]:
    with stopped_after([start_mockex(name=f"exchange{i}", seed=MARKET_SEED) for i in (1, 2, 3)]) as services:
        yield services


@pytest.fixture
async def exchanges(exchange_services: list[Service]) -> AsyncIterator[Exchanges]:
    async with exchange_admin(exchange_services) as admin:
        yield admin


@pytest.fixture
def settings(redis_service: Service, dynamo_service: Service, exchange_services: list[Service]) -> Settings:
    return Settings.from_env(
        {
            "REDIS_URL": redis_service.url,
            "EXCHANGE_URLS": ",".join(f"{s.url}/mock/ticker" for s in exchange_services),
            "EXCHANGE_TIMEOUT_SECONDS": "1",
            "AWS_ENDPOINT_URL_DYNAMODB": dynamo_service.url,
            "PRICES_TABLE": f"prices-{uuid.uuid4().hex[:12]}",
            # Tests refresh on purpose; the scheduler's own tests turn it on.
            "AUTO_REFRESH": "false",
            # A writer task in the app (its own process is tested in test_outbox.py).
            "HISTORY_WRITER": "inline",
            # The refresh work on the app's loop (its own process is tested in test_data_plane.py).
            "DATA_PLANE": "inline",
            # Tests refresh the same asset in quick succession; the guard's own tests turn these on.
            "REFRESH_MIN_INTERVAL_SECONDS": "0",
            "REFRESH_RATE_LIMIT": "0",
        }
    )


@pytest.fixture
async def redis_client(redis_service: Service) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_service.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def dynamo(dynamo_service: Service, settings: Settings) -> AsyncIterator[DynamoDBClient]:
    async with get_session().create_client(
        "dynamodb", region_name=settings.aws_region, endpoint_url=dynamo_service.url
    ) as client:
        yield client


@pytest.fixture
async def app(settings: Settings, redis_client: redis.Redis, exchanges: Exchanges) -> Application:
    # Depends on redis_client and exchanges so that Redis is empty and exchanges healthy first.
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Any, app: Application) -> TestClient[Any, Application]:
    test_client: TestClient[Any, Application] = await aiohttp_client(app)
    return test_client
