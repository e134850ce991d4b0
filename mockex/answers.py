"""Answers shared by every format mockex speaks: JSON, failures per the faults, hostile bodies."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from mockex.exchange import Exchange
from mockex.faults import DRIP_SECONDS, HUGE_BODY_BYTES

__all__ = ["apply_faults", "hostile_answer", "json_response"]


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def apply_faults(exchange: Exchange) -> web.Response | None:
    """Delay per the faults; the failure response to send instead of a quote, if any."""
    if exchange.faults.mode == "held":
        # A test's gate: nothing is answered until it sets another mode, then per that mode.
        await exchange.released.wait()
    faults = exchange.faults
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if faults.mode == "down":
        return json_response({"msg": f"{exchange.name} is down"}, 503)
    if faults.error_rate and exchange.rng.random() < faults.error_rate:
        return json_response({"msg": f"{exchange.name} internal error"}, 500)
    return None


async def hostile_answer(request: web.Request, kind: str, good: bytes) -> web.StreamResponse:
    """A whole answer that is wrong in itself: far too big, far too slow, or not declared JSON."""
    if kind == "huge_body":
        return web.Response(
            body=good[:-1] + b',"padding":"' + b"x" * HUGE_BODY_BYTES + b'"}', content_type="application/json"
        )
    if kind == "wrong_content_type":
        return web.Response(body=good, content_type="text/html")
    drip = web.StreamResponse(headers={"Content-Type": "application/json"})
    drip.content_length = len(good)
    await drip.prepare(request)
    for index in range(len(good)):
        await drip.write(good[index : index + 1])
        await asyncio.sleep(DRIP_SECONDS)
    await drip.write_eof()
    return drip
