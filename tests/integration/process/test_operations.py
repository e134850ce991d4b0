"""Operating the server: readiness, metrics, the served spec."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import start_redis
from tests.paths import REPO_ROOT
from tests.support import Exchanges, checked

Client = TestClient[Any, Any]


async def test_ready_when_backends_answer(client: Client) -> None:
    response = await client.get("/ready")
    assert response.status == 200
    assert await checked(response) == {"status": "ready", "redis": "ok", "dynamodb": "ok"}


async def test_not_ready_names_what_is_down(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    redis_server = start_redis()
    app = create_app(dataclasses.replace(settings, redis_url=redis_server.url, redis_timeout_seconds=0.5))
    client = await aiohttp_client(app)
    redis_server.stop()
    response = await client.get("/ready")
    assert response.status == 503
    body = await checked(response)
    assert body["redis"] == "down"
    assert body["dynamodb"] == "ok"
    assert "redis" in body["msg"]
    assert (await client.get("/health")).status == 200  # alive all the same


async def test_metrics_parse_and_count_what_happened(client: Client, exchanges: Exchanges) -> None:
    await client.post("/refresh/btcusdt")
    await client.get("/prices/btcusdt")
    await client.get("/prices/nosuchcoin")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = ("route", "/prices/{asset}")
    assert samples["aggserver_http_requests_total", (route, ("status", "200"))] >= 1
    assert samples["aggserver_http_requests_total", (route, ("status", "400"))] >= 1
    assert samples["aggserver_http_request_duration_seconds_count", (route,)] >= 2
    assert samples["aggserver_refreshes_total", (("outcome", "ok"), ("tier", "hot"))] >= 1
    exchange_requests = [v for (name, _), v in samples.items() if name == "aggserver_exchange_requests_total"]
    assert exchange_requests == [1.0, 1.0, 1.0]
    assert {v for (name, _), v in samples.items() if name == "aggserver_exchange_circuit_state"} == {0.0}
    assert ("aggserver_history_queue_depth", ()) in samples
    assert all("asset" not in dict(labels) for _, labels in samples)
    # The standard families of a Python service, beside ours.
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= names
    assert {"python_gc_collections_total", "python_info"} <= names


async def test_spec_is_served(client: Client) -> None:
    response = await client.get("/openapi.yaml")
    assert response.status == 200
    assert yaml.safe_load(await response.text()) == yaml.safe_load((REPO_ROOT / "openapi.yaml").read_text())
