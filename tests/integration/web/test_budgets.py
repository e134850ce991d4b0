"""A fair share per client: cost-based request budgets (429 + Retry-After), trusted proxies,
and the WebSocket control-message rate (1008)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE, Settings
from aggserver.web.app import create_app
from aggserver.web.keys import UPDATE_FEED
from tests.support import Exchanges, checked, poll

Client = TestClient[Any, Application]

SYMBOLS = list(load_symbols(DEFAULT_SYMBOLS_FILE).ordered[:2000])


async def budget_client(aiohttp_client: Any, settings: Settings, **changes: Any) -> Client:
    client: Client = await aiohttp_client(create_app(dataclasses.replace(settings, **changes)))
    return client


def batch(assets: list[str]) -> str:
    return "/prices?assets=" + ",".join(assets)


async def test_a_batch_spends_its_asset_count(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any
) -> None:
    client = await budget_client(
        aiohttp_client, settings, client_budget_per_second=0.001, client_budget_burst=1_500
    )
    assert (await client.get(batch(SYMBOLS[:1000]))).status == 200  # 500 left
    refused = await client.get(batch(SYMBOLS[1000:1600]))
    assert refused.status == 429
    body = await checked(refused)
    assert int(refused.headers["Retry-After"]) == body["retry_after"] > 0
    assert (await client.get(batch(SYMBOLS[1000:1400]))).status == 200  # 400 of the 500
    metrics = await (await client.get("/metrics")).text()
    assert 'aggserver_client_budget_refusals_total{route="/prices"} 1.0' in metrics


async def test_a_client_past_its_budget_is_refused_while_another_is_served(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any
) -> None:
    client = await budget_client(
        aiohttp_client,
        settings,
        client_budget_per_second=0.001,
        client_budget_burst=50,
        trusted_proxies=("127.0.0.1",),
    )
    greedy = {"X-Forwarded-For": "203.0.113.7"}
    polite = {"X-Forwarded-For": "198.51.100.9"}
    # A client cannot pose as another by writing its own X-Forwarded-For: the proxy appends the
    # address it saw, and the last hop it vouches for is the client.
    spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
    assert (await client.post("/refresh/btcusdt", headers=polite)).status == 200
    assert (await client.get(batch(SYMBOLS[:50]), headers=greedy)).status == 200
    refused = await client.get("/prices/btcusdt", headers=greedy)
    assert refused.status == 429
    assert "Retry-After" in refused.headers
    assert (await client.get("/prices/btcusdt", headers=spoofed)).status == 429
    assert (await checked(await client.get("/prices/btcusdt", headers=polite)))["asset"] == "btcusdt"
    assert (await client.get("/health", headers=greedy)).status == 200  # probes are free


@pytest.mark.parametrize("proxies", [(), ("127.0.0.9",)])
async def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any, proxies: tuple[str, ...]
) -> None:
    client = await budget_client(
        aiohttp_client,
        settings,
        client_budget_per_second=0.001,
        client_budget_burst=5,
        trusted_proxies=proxies,
    )
    for _ in range(5):
        await client.get("/prices/btcusdt", headers={"X-Forwarded-For": "203.0.113.7"})
    # A new forwarded address from an untrusted peer is still the peer: refused.
    response = await client.get("/prices/btcusdt", headers={"X-Forwarded-For": "198.51.100.1"})
    assert response.status == 429


async def test_exempt_addresses_are_never_limited(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any
) -> None:
    client = await budget_client(
        aiohttp_client,
        settings,
        client_budget_per_second=0.001,
        client_budget_burst=2,
        client_budget_exempt=("127.0.0.1",),
    )
    statuses = {(await client.get("/prices/nosuchcoin")).status for _ in range(10)}
    assert statuses == {400}


async def test_history_and_candles_spend_what_they_may_return(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any
) -> None:
    client = await budget_client(
        aiohttp_client, settings, client_budget_per_second=0.001, client_budget_burst=150
    )
    assert (await client.get("/prices/btcusdt/history?limit=100")).status == 200  # 50 left
    assert (await client.get("/prices/btcusdt/history?limit=100")).status == 429
    assert (await client.get("/prices/btcusdt/candles?interval=1m&from=0&to=5999")).status == 429  # 100
    assert (await client.get("/prices/btcusdt/candles?interval=1m&from=0&to=2399")).status == 200  # 40


async def test_websocket_past_its_message_rate_is_closed_while_others_receive(
    aiohttp_client: Any, settings: Settings, exchanges: Exchanges, redis_client: Any
) -> None:
    client = await budget_client(aiohttp_client, settings, ws_messages_per_second=1.0, ws_message_burst=3)
    await poll(lambda: client.app[UPDATE_FEED].connected, timeout=10)
    async with client.ws_connect("/ws") as calm, client.ws_connect("/ws") as flood:
        await calm.send_json({"op": "subscribe", "assets": ["btcusdt"]})
        assert (await calm.receive_json())["type"] == "subscribed"
        for _ in range(10):
            await flood.send_json({"op": "subscribe", "assets": ["ethusdt"]})
        async with asyncio.timeout(10):
            while (message := await flood.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                pass
        assert flood.close_code == 1008
        await exchanges.pin(0, {"btcusdt": {"price": 11.0}})
        await exchanges.pin(1, {"btcusdt": {"price": 11.0}})
        await exchanges.pin(2, {"btcusdt": {"price": 11.0}})
        assert (await client.post("/refresh/btcusdt")).status == 200
        async with asyncio.timeout(10):
            while True:
                message = await calm.receive_json()
                if message["type"] == "price" and message["data"]["price"] == 11.0:
                    break
    metrics = await (await client.get("/metrics")).text()
    assert "aggserver_ws_rate_closes_total 1.0" in metrics
