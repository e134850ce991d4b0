"""Quality guards (min_sources, max_dispersion) on reads, batches and streams, and the reason codes
every excluded quote and every missing or rejected asset carries."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support import Exchanges, checked, sse_events

Client = TestClient[Any, Any]

# One example of every form a reason for leaving a quote out takes, and its code.
QUOTE_REASONS = {
    "outlier: +12.0% from the median": "outlier",
    "quote timestamp is in the future": "future_quote",
    "quote is 42 s old": "stale_quote",
    "timed out": "timeout",
    "timed out (refresh budget)": "timeout",
    "rate limited (HTTP 429)": "rate_limited",
    "rate limited: no requests for another 12 s": "rate_limited",
    "rate budget kept for hot assets": "rate_limited",
    "circuit open": "breaker_open",
    "HTTP 503": "http_error",
    "HTTP 500: code -1001": "http_error",
    "request failed: ClientConnectorError": "unreachable",
    "not listed": "not_listed",
    "missing from bulk answer": "no_quotes",
    "no streamed ticker yet": "no_quotes",
    "not polled yet": "no_quotes",
    "venue error: code 50001: busy": "venue_error",
    "body is not JSON": "bad_body",
    "content type text/html is not JSON": "bad_body",
    "invalid quote: price is not positive": "bad_body",
    "price is not a number: 'lots'": "bad_body",
}


async def test_each_guard_refuses_a_price_alone_naming_the_rule_and_both_values(
    client: Client, exchanges: Exchanges
) -> None:
    # Three venues 2% apart: three sources, dispersion 0.02.
    await exchanges.pin_prices("bnbusdt", [100.0, 101.0, 102.0], timestamp=int(time.time()))
    assert (await client.post("/refresh/bnbusdt")).status == 200
    passing = await checked(await client.get("/prices/bnbusdt?min_sources=3&max_dispersion=0.05"))
    assert (passing["sources"], passing["dispersion"]) == (3, pytest.approx(0.02, rel=0.01))
    few = await client.get("/prices/bnbusdt?min_sources=4&max_dispersion=0.05")
    assert few.status == 503
    assert await checked(few) == {
        "msg": "Price fails min_sources: 3 sources, at least 4 required",
        "reason_code": "too_few_sources",
        "rule": "min_sources",
        "actual": 3,
        "required": 4,
    }
    spread = await client.get("/prices/bnbusdt?min_sources=3&max_dispersion=0.01")
    assert spread.status == 503
    body = await checked(spread)
    assert (body["reason_code"], body["rule"], body["required"]) == ("too_dispersed", "max_dispersion", 0.01)
    assert body["actual"] == pytest.approx(0.02, rel=0.01)
    detailed = await client.get("/prices/bnbusdt?detail=sources&min_sources=4")
    assert detailed.status == 503
    for query in ("min_sources=0", "min_sources=many", "max_dispersion=-1", "max_dispersion=nan"):
        assert (await client.get(f"/prices/bnbusdt?{query}")).status == 400


async def test_batches_list_rejected_prices_and_the_reason_each_asset_is_missing(
    client: Client, exchanges: Exchanges
) -> None:
    await exchanges.pin_prices("bnbusdt", [100.0, 101.0, 102.0], timestamp=int(time.time()))
    await exchanges.pin_prices("trxusdt", [0.1, 0.1, 0.1], timestamp=int(time.time()))
    for asset in ("bnbusdt", "trxusdt"):
        assert (await client.post(f"/refresh/{asset}")).status == 200
    body = await checked(
        await client.get("/prices?assets=bnbusdt,trxusdt,dogeusdt,nosuch&max_dispersion=0.01")
    )
    assert [p["asset"] for p in body["prices"]] == ["trxusdt"]
    assert [(r["asset"], r["reason_code"]) for r in body["rejected"]] == [("bnbusdt", "too_dispersed")]
    assert body["missing"] == ["dogeusdt"]
    assert body["reasons"] == {"dogeusdt": "no_price"}
    assert body["invalid"] == ["nosuch"]


async def test_excluded_quotes_carry_reason_codes(client: Client, exchanges: Exchanges) -> None:
    now = int(time.time())
    await exchanges.pin(0, {"adausdt": {"price": 0.5, "volume": 1.0, "timestamp": now}})
    await exchanges.pin(1, {"adausdt": {"price": 0.5, "volume": 1.0, "timestamp": now - 3_600}})
    await exchanges.set_faults(2, mode="down")
    assert (await client.post("/refresh/adausdt")).status == 200
    body = await checked(await client.get("/prices/adausdt?detail=sources"))
    codes = {q["exchange"]: q.get("reason_code") for q in body["quotes"]}
    names = [url.removeprefix("http://") for url in exchanges.urls]  # in the exchanges' order
    assert [codes[name] for name in names] == [None, "stale_quote", "http_error"]
    await exchanges.set_faults(0, mode="garbage", garbage_kind="not_json")
    await exchanges.set_faults(1, mode="down")
    failed = await client.post("/refresh/adausdt")
    assert failed.status == 502
    refused = await checked(failed)
    assert sorted(refused["reason_codes"].values()) == ["bad_body", "http_error", "http_error"]


async def test_streams_say_when_a_price_fails_the_guard(client: Client, exchanges: Exchanges) -> None:
    await exchanges.pin_prices("bnbusdt", [100.0, 101.0, 102.0], timestamp=int(time.time()))
    assert (await client.post("/refresh/bnbusdt")).status == 200
    async with client.get("/stream?assets=bnbusdt&max_dispersion=0.01") as response:
        async for event in sse_events(response):
            if "event" in event:
                break
    assert event["event"] == "rejected"
    data = orjson.loads(event["data"])
    assert (data["asset"], data["reason_code"], data["rule"]) == (
        "bnbusdt",
        "too_dispersed",
        "max_dispersion",
    )
    async with client.ws_connect("/ws?min_sources=2") as socket:
        await socket.send_json({"op": "subscribe", "assets": ["bnbusdt"]})
        frames = [await socket.receive_json(timeout=10) for _ in range(2)]
    assert {frame["type"] for frame in frames} == {"subscribed", "price"}
