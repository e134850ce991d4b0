"""The mock exchange tests' factory fixture: every exchange a test opens is closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.mockex.apps import exchange

OpenExchange = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def open_exchange() -> AsyncIterator[OpenExchange]:
    """``await open_exchange(venue=..., listed=...)``: ``apps.exchange``, closed at teardown."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**options: Any) -> TestClient[Any, Any]:
        client = await exchange(**options)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
