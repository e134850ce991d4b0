"""Live streams: SSE on /stream and WebSocket on /ws, fed through Redis pub/sub."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from aggserver.domain.symbols import load_symbols
from aggserver.settings import Settings
from aggserver.web.app import create_app
from aggserver.web.keys import UPDATE_FEED
from devstack.services import Service, free_port
from tests.support import Exchanges, answers, checked, child_server, poll, server_env, sse_events, valid_price

Client = TestClient[Any, Any]


async def pin_all(exchanges: Exchanges, asset: str, price: float) -> None:
    for index in range(3):
        await exchanges.pin(index, {asset: {"price": price, "volume": 1.0, "timestamp": int(time.time())}})


async def next_price(events: AsyncIterator[dict[str, str]]) -> dict[str, Any]:
    """The next price event (skipping heartbeats), its data checked against the Price schema."""
    async with asyncio.timeout(10):
        async for event in events:
            if event.get("event") == "price":
                body = valid_price(event["data"])
                assert event["id"] == str(body["updated_at"])
                return body
    raise AssertionError("stream ended")


@pytest.fixture
async def live_client(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> Client:
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(settings, stream_heartbeat_seconds=0.2))
    )
    await poll(lambda: client.app[UPDATE_FEED].connected, timeout=10)
    return client


async def test_sse_sends_the_current_price_then_every_update(
    live_client: Client, exchanges: Exchanges
) -> None:
    await pin_all(exchanges, "btcusdt", 100.0)
    assert (await live_client.post("/refresh/btcusdt")).status == 200
    response = await live_client.get("/stream?assets=BTCUSDT,ethusdt")
    assert response.status == 200
    events = sse_events(response)
    first = await next_price(events)
    assert (first["asset"], first["price"]) == ("btcusdt", 100.0)

    await pin_all(exchanges, "ethusdt", 7.0)
    assert (await live_client.post("/refresh/ethusdt")).status == 200
    update = await next_price(events)
    assert (update["asset"], update["price"]) == ("ethusdt", 7.0)
    response.close()


async def test_sse_heartbeat_is_a_comment(live_client: Client) -> None:
    response = await live_client.get("/stream?assets=solusdt")
    async with asyncio.timeout(10):
        async for event in sse_events(response):
            assert event == {"comment": "ping"}
            break
    response.close()


async def test_sse_last_event_id_skips_what_the_client_has(live_client: Client, exchanges: Exchanges) -> None:
    assert (await live_client.post("/refresh/btcusdt")).status == 200
    current = await checked(await live_client.get("/prices/btcusdt"))
    # The client saw a later event than the cached price: nothing to replay, the next update comes.
    response = await live_client.get(
        "/stream?assets=btcusdt", headers={"Last-Event-ID": str(current["updated_at"] + 1)}
    )
    events = sse_events(response)
    await pin_all(exchanges, "btcusdt", 123.0)
    assert (await live_client.post("/refresh/btcusdt")).status == 200
    assert (await next_price(events))["price"] == 123.0
    response.close()


async def test_update_made_by_another_instance_reaches_the_stream(
    settings: Settings, live_client: Client, exchanges: Exchanges, aiohttp_client: Any
) -> None:
    other: Client = await aiohttp_client(create_app(settings))
    response = await live_client.get("/stream?assets=xrpusdt")
    events = sse_events(response)
    await pin_all(exchanges, "xrpusdt", 0.5)
    assert (await other.post("/refresh/xrpusdt")).status == 200
    assert (await next_price(events))["price"] == 0.5
    response.close()


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("", "at least one symbol"),
        ("?assets=btcusdt,nosuchcoin", "not symbols: nosuchcoin"),
        ("?assets=" + ",".join(["btcusdt"] * 101), "at most 100"),
    ],
)
async def test_sse_rejects_bad_subscriptions(live_client: Client, query: str, fragment: str) -> None:
    response = await live_client.get(f"/stream{query}")
    assert response.status == 400
    assert fragment in (await checked(response))["msg"]


async def test_stream_connections_are_limited(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    # A client that leaves is noticed at the next heartbeat: make that soon.
    limited = dataclasses.replace(settings, stream_max_connections=1, stream_heartbeat_seconds=0.2)
    client: Client = await aiohttp_client(create_app(limited))
    first = await client.get("/stream?assets=btcusdt")
    assert first.status == 200
    refused = await client.get("/stream?assets=btcusdt")
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "5"
    assert "Too many live streams" in (await checked(refused))["msg"]
    first.close()

    async def admitted() -> bool:
        response = await client.get("/stream?assets=btcusdt")
        response.close()
        return response.status == 200

    await poll(admitted, timeout=10)


async def test_websocket_subscribe_updates_and_errors(live_client: Client, exchanges: Exchanges) -> None:
    await pin_all(exchanges, "btcusdt", 50.0)
    assert (await live_client.post("/refresh/btcusdt")).status == 200
    async with live_client.ws_connect("/ws") as socket:

        async def receive(kind: str) -> dict[str, Any]:
            async with asyncio.timeout(10):
                while True:
                    message = await socket.receive_json()
                    if message["type"] == kind:
                        return dict(message)

        await socket.send_json({"op": "subscribe", "assets": ["BTCUSDT", "ethusdt", "nope!"]})
        assert await receive("subscribed") == {
            "type": "subscribed",
            "assets": ["btcusdt", "ethusdt"],
            "invalid": ["nope!"],
        }
        snapshot = valid_price(json.dumps((await receive("price"))["data"]))
        assert (snapshot["asset"], snapshot["price"]) == ("btcusdt", 50.0)

        await pin_all(exchanges, "ethusdt", 3.0)
        assert (await live_client.post("/refresh/ethusdt")).status == 200
        update = await receive("price")
        assert (update["data"]["asset"], update["data"]["price"]) == ("ethusdt", 3.0)

        await socket.send_json({"op": "unsubscribe", "assets": ["ethusdt"]})
        assert (await receive("unsubscribed"))["assets"] == ["btcusdt"]

        await socket.send_str("not json")
        assert (await receive("error"))["msg"] == "message is not JSON"
        await socket.send_json({"op": "dance"})
        assert "expected" in (await receive("error"))["msg"]
        await socket.send_bytes(b"\x00")
        assert (await receive("error"))["msg"] == "send JSON text messages"
        await socket.send_json({"op": "subscribe", "assets": [f"a{i}" for i in range(5)]})
        assert (await receive("subscribed"))["invalid"] == [f"a{i}" for i in range(5)]


async def test_websocket_subscription_limit(live_client: Client, settings: Settings) -> None:
    symbols = load_symbols(settings.symbols_file).ordered
    async with live_client.ws_connect("/ws") as socket:
        await socket.send_json({"op": "subscribe", "assets": list(symbols[:101])})
        assert await socket.receive_json(timeout=10) == {
            "type": "error",
            "msg": "at most 100 assets per stream",
        }
        # The connection stays usable: a subscription within the limit is accepted.
        await socket.send_json({"op": "subscribe", "assets": list(symbols[:100])})
        reply = await socket.receive_json(timeout=10)
        assert reply["type"] == "subscribed"
        assert len(reply["assets"]) == 100


async def test_sigterm_ends_open_streams_and_the_server_exits_cleanly(
    settings: Settings, redis_service: Service, exchanges: Exchanges
) -> None:
    port = free_port()
    env = server_env(settings, redis_service.url, port, AUTO_REFRESH="false")
    with child_server(env) as process:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            await poll(lambda: answers(session, f"{base}/health"), timeout=30)
            async with (
                session.get(f"{base}/stream?assets=btcusdt") as stream,
                session.ws_connect(f"{base}/ws") as ws,
            ):
                assert stream.status == 200
                process.send_signal(signal.SIGTERM)
                # A hang detector, not a speed test: the server ends the streams itself.
                async with asyncio.timeout(30):
                    async for _ in sse_events(stream):
                        pass
                    closing = await ws.receive()
                # Ended by the shutdown (1001, going away), not cut when the 10 s grace ran out.
                assert closing.type is WSMsgType.CLOSE
                assert closing.data == 1001
        assert process.wait(timeout=30) == 0


async def test_a_stream_outlives_the_keepalive_timeout(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    # KEEPALIVE_SECONDS cuts idle connections and trickled headers, never a stream in progress.
    changed = dataclasses.replace(settings, keepalive_seconds=0.5, stream_heartbeat_seconds=0.2)
    client: Client = await aiohttp_client(create_app(changed))
    response = await client.get("/stream?assets=btcusdt")
    heartbeats = 0
    async with asyncio.timeout(10):
        async for event in sse_events(response):
            heartbeats += event == {"comment": "ping"}
            if heartbeats == 10:  # two seconds: four keep-alive timeouts
                break
    assert heartbeats == 10
    response.close()
