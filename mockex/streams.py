"""Venue personalities' WebSocket ticker streams, with the faults a stream client must survive.

A personality with a ``stream_path`` gets a WebSocket endpoint there. Every ``interval`` the hub
pushes each connection the frames its personality makes for the instruments it subscribed to
(an all-market stream subscribes a connection to everything as it connects), answers the
client's frames (subscriptions, pings) as the venue does, and closes a connection its client left
silent past ``idle_close`` (OKX's 30 s rule). Controls (``POST /mock/admin/streams``):
``{"disconnect": true}`` closes every connection now (a venue's maintenance or its 24-hour cut),
``{"stall": true}`` keeps connections open but sends nothing (a stalled feed), ``{"refuse":
true}`` answers new connections 503 (the stream down, REST up), ``{"quiet": [names]}`` leaves
those instruments out of every push (real venues push only what changed), ``interval_ms``
and ``idle_close_ms`` tune the pace. ``GET /mock/admin/streams`` counts what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from mockex.venues.base import Personality

__all__ = ["StreamHub", "StreamSocket"]

_ids = itertools.count(1)
CONTROLS = frozenset({"disconnect", "stall", "refuse", "quiet", "interval_ms", "idle_close_ms"})


@dataclass(eq=False)
class StreamSocket:
    """One client connection: what it subscribed to and when it last said anything."""

    ws: web.WebSocketResponse
    natives: dict[str, None] = field(default_factory=dict)  # ordered set
    heard: float = field(default_factory=time.monotonic)
    conn_id: str = field(default_factory=lambda: f"mock-{next(_ids)}")


@dataclass
class StreamHub:
    """Every stream connection of one mock venue, its pace and its faults."""

    personality: Personality
    interval: float = 1.0
    idle_close: float | None = None
    stalled: bool = False
    # Connections refused (HTTP 503) instead of upgraded: the stream is down, REST still up.
    refusing: bool = False
    # Instruments (venue names) left out of every push: unchanged, as venues see it.
    quiet: set[str] = field(default_factory=set)
    sockets: set[StreamSocket] = field(default_factory=set)
    connected_total: int = 0
    client_frames: int = 0
    frames_sent: int = 0
    idle_closes: int = 0
    refused: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refusing:
            self.refused += 1
            return web.json_response({"msg": "stream unavailable"}, status=503)
        ws = web.WebSocketResponse(heartbeat=self.personality.stream_heartbeat)
        await ws.prepare(request)
        socket = StreamSocket(ws)
        if self.personality.all_market_stream:
            socket.natives = dict.fromkeys(self.personality.natives)
        self.sockets.add(socket)
        self.connected_total += 1
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                socket.heard = time.monotonic()
                self.client_frames += 1
                for reply in self.personality.on_stream_text(socket, message.data):
                    await ws.send_str(reply)
        finally:
            self.sockets.discard(socket)
        return ws

    async def push(self) -> None:
        """Every ``interval``: each connection's frames, unless stalled; idle ones closed."""
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            for socket in list(self.sockets):
                if self.idle_close is not None and now - socket.heard > self.idle_close:
                    self.idle_closes += 1
                    await socket.ws.close(code=4004, message=b"no message from the client in time")
                    continue
                if self.stalled or not socket.natives or socket.ws.closed:
                    continue
                # An all-market stream carries whatever the venue lists now.
                natives = self.personality.natives if self.personality.all_market_stream else socket.natives
                pushed = [n for n in natives if n not in self.quiet]
                with contextlib.suppress(ConnectionError, RuntimeError):
                    for frame in self.personality.stream_frames(pushed):
                        await socket.ws.send_str(frame)
                        self.frames_sent += 1

    async def disconnect_all(self) -> int:
        sockets = list(self.sockets)
        for socket in sockets:
            await socket.ws.close(code=1001, message=b"going away")
        return len(sockets)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.sockets),
            "connected_total": self.connected_total,
            "subscriptions": sum(len(s.natives) for s in self.sockets),
            "client_frames": self.client_frames,
            "frames_sent": self.frames_sent,
            "idle_closes": self.idle_closes,
            "stalled": self.stalled,
            "refusing": self.refusing,
            "refused": self.refused,
            "interval_ms": int(self.interval * 1000),
            "quiet": sorted(self.quiet),
        }

    async def control(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict) or set(body) - CONTROLS:
                raise ValueError(f"fields: {', '.join(sorted(CONTROLS))}")
            if "interval_ms" in body:
                self.interval = max(0.01, float(body["interval_ms"]) / 1000)
            if "idle_close_ms" in body:
                self.idle_close = (
                    None if body["idle_close_ms"] is None else float(body["idle_close_ms"]) / 1000
                )
            if "stall" in body:
                self.stalled = bool(body["stall"])
            if "refuse" in body:
                self.refusing = bool(body["refuse"])
            if "quiet" in body:
                self.quiet = {str(name) for name in body["quiet"]}
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            return web.json_response({"msg": f"bad stream control: {exc}"}, status=400)
        closed = await self.disconnect_all() if body.get("disconnect") else 0
        return web.json_response({**self.stats(), "closed": closed})

    async def show(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """The pusher's lifetime (``cleanup_ctx``): connections are closed on the way out."""
        task = asyncio.create_task(self.push())
        yield
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        await self.disconnect_all()
