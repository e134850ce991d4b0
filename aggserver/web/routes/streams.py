"""Live prices over Server-Sent Events (``GET /stream``) and WebSocket (``GET /ws``).

Both carry the same events from the process's StreamHub: first the current price of each
subscribed asset, then every new aggregate of it, skipping ahead when the client reads slower
than prices change. A client that stops reading for ``SEND_TIMEOUT`` seconds is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp_sse import EventSourceResponse, sse_response

from aggserver.errors import BackendUnavailable, InvalidParameter, OverBudget
from aggserver.process.tasks import stop_task
from aggserver.web import params
from aggserver.web.budget import TokenBucket, charge
from aggserver.web.guard import GuardedRoutes
from aggserver.web.keys import SETTINGS, STREAM_HUB, SYMBOLS
from aggserver.web.stream_hub import Event, PriceEvent, StreamHub, Subscription

__all__ = ["routes"]

routes = GuardedRoutes()

SEND_TIMEOUT = 10.0
WS_MAX_MESSAGE = 64 * 1024
# How long a close waits for the client's close frame, reading (and dropping) what it still
# sends: a flooding client closed for its message rate must not be read for aiohttp's 10 s.
WS_CLOSE_SECONDS = 1.0


@routes.get("/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """``?assets=a,b,c``: an ``event: price`` per new aggregate, ``id`` its updated_at; with
    ``min_sources``/``max_dispersion``, an ``event: rejected`` instead for a price failing them."""
    hub = request.app[STREAM_HUB]
    params.only(request, ("assets", *params.QUALITY))
    assets, invalid = params.listed_assets(request, limit=hub.max_assets)
    if invalid:
        raise InvalidParameter(f"not symbols: {', '.join(invalid[:10])}")
    guard = params.quality(request)
    charge(request, len(assets), "/stream")
    since = _last_event_id(request)
    subscription = hub.open(guard)
    try:
        hub.subscribe(subscription, assets)
        async with sse_response(
            request,
            ping_interval=request.app[SETTINGS].stream_heartbeat_seconds,
            send_timeout=SEND_TIMEOUT,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ) as response:
            sender = asyncio.create_task(_send_events(response, hub, subscription, assets, since))
            try:
                await response.wait()  # until the client goes or the sender stops the stream
            finally:
                # Ending the subscription stops the sender even where a library it awaits
                # swallowed a cancellation; cancelling covers a send still in progress.
                subscription.end()
                await stop_task(sender)
        return response
    finally:
        hub.close(subscription)


def _last_event_id(request: web.Request) -> int | None:
    # Our event ids are the updated_at of the price sent; anything else is ignored.
    raw = request.headers.get("Last-Event-ID", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


async def _send_events(
    response: EventSourceResponse,
    hub: StreamHub,
    subscription: Subscription,
    assets: list[str],
    since: int | None,
) -> None:
    async def send(event: Event) -> None:
        kind, data = event.judged(subscription.guard)
        await response.send(data.decode(), id=str(event.updated_at), event=kind)

    try:
        for current in await _current(hub, assets):
            # After a reconnect, only what changed since the last event the client saw.
            if since is None or current.updated_at >= since:
                await send(current)
        while not subscription.ended:
            for event in await subscription.next_events():
                await send(event)
    except (ConnectionResetError, TimeoutError, RuntimeError):
        pass  # the client went away or stopped reading
    finally:
        response.stop_streaming()


async def _current(hub: StreamHub, assets: list[str]) -> list[PriceEvent]:
    try:
        return await hub.current(assets)
    except BackendUnavailable:
        return []  # Redis is down: the stream starts with the next update instead


@routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    """JSON messages: ``{"op": "subscribe" | "unsubscribe", "assets": [...]}`` in, and
    ``subscribed`` / ``unsubscribed`` / ``price`` / ``rejected`` / ``error`` messages out; the
    quality guards are query parameters of the connection, as on ``/stream``."""
    hub = request.app[STREAM_HUB]
    params.only(request, params.QUALITY)
    subscription = hub.open(params.quality(request))
    socket = web.WebSocketResponse(
        heartbeat=request.app[SETTINGS].stream_heartbeat_seconds,
        max_msg_size=WS_MAX_MESSAGE,
        timeout=WS_CLOSE_SECONDS,
    )
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    messages = TokenBucket(
        rate=settings.ws_messages_per_second, burst=settings.ws_message_burst, now=loop.time()
    )
    try:
        await socket.prepare(request)
        sender = asyncio.create_task(_send_frames(socket, subscription))
        try:
            async for message in socket:
                if messages.take(1, loop.time()):
                    # A client changing its subscriptions faster than this is flooding.
                    hub.rate_closes += 1
                    await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"message rate exceeded")
                    break
                if message.type == WSMsgType.TEXT:
                    reply = await _command(request, hub, subscription, message.data)
                else:
                    reply = {"type": "error", "msg": "send JSON text messages"}
                await _send(socket, orjson.dumps(reply))
        finally:
            subscription.end()  # as in stream(): cancelling alone is not always enough
            await stop_task(sender)
    finally:
        hub.close(subscription)
    return socket


async def _command(
    request: web.Request, hub: StreamHub, subscription: Subscription, text: str
) -> dict[str, Any]:
    try:
        command = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"type": "error", "msg": "message is not JSON"}
    op = command.get("op") if isinstance(command, dict) else None
    names = command.get("assets") if isinstance(command, dict) else None
    if op not in ("subscribe", "unsubscribe") or not isinstance(names, list):
        return {"type": "error", "msg": 'expected {"op": "subscribe" | "unsubscribe", "assets": [symbols]}'}
    symbols = request.app[SYMBOLS]
    known = [n.lower() for n in names if isinstance(n, str) and n.lower() in symbols]
    invalid = [n for n in names if not (isinstance(n, str) and n.lower() in symbols)]
    if op == "unsubscribe":
        hub.unsubscribe(subscription, known)
        return {"type": "unsubscribed", "assets": sorted(subscription.assets), "invalid": invalid}
    try:
        charge(request, len(known), "/ws")
        added = hub.subscribe(subscription, known)
    except OverBudget as exc:
        return {"type": "error", "msg": str(exc), "retry_after": exc.retry_after}
    except ValueError as exc:
        return {"type": "error", "msg": str(exc)}
    for event in await _current(hub, added):
        subscription.offer(event)
    return {"type": "subscribed", "assets": sorted(subscription.assets), "invalid": invalid}


async def _send_frames(socket: web.WebSocketResponse, subscription: Subscription) -> None:
    try:
        while not subscription.ended:
            for event in await subscription.next_events():
                kind, data = event.judged(subscription.guard)
                await _send(socket, b'{"type":"%s","data":%s}' % (kind.encode(), data))
    except (ConnectionResetError, TimeoutError, RuntimeError):
        pass
    finally:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await socket.close(code=1001)


async def _send(socket: web.WebSocketResponse, frame: bytes) -> None:
    async with asyncio.timeout(SEND_TIMEOUT):
        await socket.send_str(frame.decode())
