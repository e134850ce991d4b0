"""Hostile clients: the refresh guard (token, minimum interval, global rate), malformed and
oversized requests, slow clients, and secrets that must never show."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from aggserver.settings import Settings
from aggserver.web.app import create_app
from devstack.services import Service, free_port
from tests.support import Exchanges, checked, child_server, poll, server_env, stop_with

Client = TestClient[Any, Any]


async def guarded_client(aiohttp_client: Any, settings: Settings, **changes: Any) -> Client:
    client: Client = await aiohttp_client(create_app(dataclasses.replace(settings, **changes)))
    return client


async def test_refresh_token_is_required_when_configured(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    client = await guarded_client(aiohttp_client, settings, refresh_token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        response = await client.post("/refresh/btcusdt", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await checked(response)
        assert "s3cret" not in json.dumps(body)
    # Unauthenticated callers learn nothing about symbols either.
    assert (await client.post("/refresh/nosuchcoin")).status == 401
    assert await exchanges.total_served(0) == 0
    response = await client.post("/refresh/btcusdt", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 200
    assert (await checked(response))["refreshed"] is True
    # Reads never need the token.
    assert (await client.get("/prices/btcusdt")).status == 200


async def test_a_refresh_inside_the_minimum_interval_answers_from_the_cache(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    client = await guarded_client(aiohttp_client, settings, refresh_min_interval_seconds=60.0)
    first = await checked(await client.post("/refresh/ethusdt"))
    assert first == {"message": "Price for ethusdt refreshed", "refreshed": True}
    served = await exchanges.total_served(0)
    for _ in range(20):
        again = await checked(await client.post("/refresh/ethusdt"))
        assert again["refreshed"] is False
        assert again["message"] == "Price for ethusdt is fresh, not refreshed again"
    assert await exchanges.total_served(0) == served


async def test_the_global_refresh_rate_answers_429_with_retry_after(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    client = await guarded_client(aiohttp_client, settings, refresh_rate_limit=3.0)
    assets = [
        "btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt", "adausdt",
        "dogeusdt", "trxusdt", "dotusdt", "linkusdt", "ltcusdt", "avaxusdt",
    ]  # fmt: skip
    # All at once: twelve asks arriving together overrun 3/s unless they took 3 s to arrive.
    responses = await asyncio.gather(*(client.post(f"/refresh/{asset}") for asset in assets))
    statuses = [response.status for response in responses]
    for response in responses:
        if response.status == 429:
            assert response.headers["Retry-After"] == "1"
            assert (await checked(response))["msg"] == "Too many refreshes, try again shortly"
    assert statuses.count(200) >= 3
    assert statuses.count(429) >= 1
    # Only admitted refreshes reached the exchanges.
    assert await exchanges.total_served(0) == statuses.count(200)


@pytest.mark.parametrize(
    "path",
    [
        "/prices/" + "a" * 5000,
        "/prices/btc%00usdt",
        "/prices/%E2%82%BF",
        "/prices/%20btcusdt",
        "/prices/btcusdt%20",
        "/prices/btc%2Fusdt",
        "/prices/..%2F..%2Fetc%2Fpasswd",
        "/prices/btcusdt;drop",
        "/prices/BTC-USDT",
    ],
)
async def test_hostile_symbols_get_a_json_400(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 400
    assert (await checked(response))["msg"] == "Invalid asset symbol"
    assert (await client.get("/health")).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/prices/btc/usdt"),
        ("GET", "/prices/../../etc/passwd"),
        ("GET", "/prices"),
        ("PUT", "/prices/btcusdt"),
        ("GET", "/refresh/btcusdt"),
        ("PATCH", "/stream"),
    ],
)
async def test_wrong_paths_and_methods_get_json(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert 400 <= response.status < 500
    assert "msg" in await checked(response)


async def test_unknown_query_parameters_and_get_bodies_are_400(client: Client) -> None:
    await client.post("/refresh/btcusdt")
    response = await client.get("/prices/btcusdt?max_agee=5")
    assert response.status == 400
    assert "unknown query parameter 'max_agee'" in (await checked(response))["msg"]
    response = await client.post("/refresh/btcusdt?force=1")
    assert response.status == 400
    response = await client.get("/prices/btcusdt", data=b'{"asset": "ethusdt"}')
    assert response.status == 400
    assert (await checked(response))["msg"] == "a GET request takes no body"
    assert (await client.get("/prices/btcusdt")).status == 200


async def test_an_oversized_body_is_413(client: Client) -> None:
    response = await client.post("/refresh/btcusdt", data=b"x" * 100_000)
    assert response.status == 413
    assert "msg" in await checked(response)
    assert (await client.post("/refresh/btcusdt", data=b"{}")).status == 200


async def raw_exchange(client: Client, request: bytes, *, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the test server and return what it answers (until it closes)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read() if read_until_close else await reader.read(65536)
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /prices/btcusdt HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400),
        (b"GET /prices?assets=" + b"btcusdt," * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /prices/btcusdt HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400),
        (b"GET /prices/btcusdt HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    ],
    ids=["huge-header", "huge-request-line", "too-many-headers", "tls-on-plain-port", "bad-framing"],
)
async def test_malformed_requests_get_a_json_4xx_and_the_server_stays_healthy(
    client: Client, request_bytes: bytes, status: int
) -> None:
    code, headers, body = split_response(await raw_exchange(client, request_bytes))
    assert code == status
    assert headers["content-type"].startswith("application/json")
    assert "msg" in json.loads(body)
    assert (await client.get("/health")).status == 200


async def test_http_1_0_and_pipelined_requests(client: Client) -> None:
    await client.post("/refresh/btcusdt")
    answer = await raw_exchange(client, b"GET /prices/btcusdt HTTP/1.0\r\n\r\n")
    code, _, body = split_response(answer)
    assert code == 200
    assert json.loads(body)["asset"] == "btcusdt"

    pipelined = (
        b"".join(
            f"GET /prices/{asset} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for asset in ("btcusdt", "nosuchcoin")
        )
        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    raw = await raw_exchange(client, pipelined)
    # Bodies carry no line break, so each status line follows the previous body directly.
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert statuses == [200, 400, 200]


async def test_slow_clients_are_cut_off_while_others_are_served(
    settings: Settings, exchanges: Exchanges, redis_client: Any, aiohttp_client: Any
) -> None:
    client = await guarded_client(aiohttp_client, settings, keepalive_seconds=1.0)
    await client.post("/refresh/btcusdt")
    trickles = [await asyncio.open_connection(client.host, client.port) for _ in range(50)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # A request that never ends: one header byte at a time (slowloris).
        writer.write(b"GET /prices/btcusdt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(trickle(writer)) for _, writer in trickles]
    try:
        for _ in range(10):
            assert (await client.get("/prices/btcusdt")).status == 200

        for reader, _ in trickles:
            async with asyncio.timeout(15):
                await reader.read()  # returns once the server closes the connection
            assert reader.at_eof()
        assert (await client.get("/prices/btcusdt")).status == 200
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, writer in trickles:
            writer.close()


async def test_secrets_never_appear_in_logs_or_answers(
    settings: Settings, redis_service: Service, exchanges: Exchanges
) -> None:
    secrets = {"REFRESH_TOKEN": "tok-9f8e7d", "AWS_SECRET_ACCESS_KEY": "aws-secret-1a2b3c"}
    port = free_port()
    # A Redis URL with a password, pointing where nothing listens: every Redis path fails.
    dead_redis = f"redis://:pw-5c4b3a@127.0.0.1:{free_port()}/0"
    env = server_env(settings, dead_redis, port, LOG_FORMAT="json", LOG_LEVEL="DEBUG", **secrets)
    bodies = []
    with child_server(env) as process:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"

            async def up() -> bool:
                try:
                    async with session.get(f"{base}/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await poll(up, timeout=30)
            for method, path, headers in [
                ("GET", "/ready", {}),
                ("GET", "/prices/btcusdt", {}),
                ("POST", "/refresh/btcusdt", {"Authorization": "Bearer wrong"}),
                ("POST", "/refresh/btcusdt", {"Authorization": f"Bearer {secrets['REFRESH_TOKEN']}"}),
                ("GET", "/status", {}),
                ("GET", "/metrics", {}),
            ]:
                async with session.request(method, f"{base}{path}", headers=headers) as response:
                    bodies.append(await response.text())
        lines = stop_with(process, signal.SIGTERM)
    text = json.dumps(lines) + "".join(bodies)
    for secret in [*secrets.values(), "pw-5c4b3a"]:
        assert secret not in text
    starting = next(line["message"] for line in lines if line["message"].startswith("starting:"))
    assert "redis://:***@127.0.0.1" in starting
    assert "refresh token required" in starting
