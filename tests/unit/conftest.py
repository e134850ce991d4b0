"""The unit tree runs alone, in seconds, with no servers: a test here that asks for a backing
service (Redis, DynamoDB, the mock exchanges) is a test in the wrong tree, and fails collection."""

from __future__ import annotations

import pytest

SERVICE_FIXTURES = frozenset({"redis_service", "dynamo_service", "exchange_services"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    misplaced = [
        item.nodeid
        for item in items
        if "tests/unit/" in item.nodeid and SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if misplaced:
        raise pytest.UsageError(f"unit tests that need servers (move them to tests/integration): {misplaced}")
