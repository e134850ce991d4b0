"""Push ingestion: a venue's ticker stream kept open, its tickers handed on as they arrive.

A :class:`StreamClient` connects to one venue's stream (``venues.streams``), subscribes in the
venue's batches, sends the venue's keep-alive in time (and answers its pings: aiohttp pongs by
itself), and hands every frame's tickers to ``deliver``. Any close or error is followed by a new
connection after a backoff with full jitter (``BACKOFF_START`` doubling up to ``BACKOFF_MAX``,
reset once tickers flow again), so a venue ending a connection on its own (Binance after 24
hours) costs a fraction of a second; a connection silent for ``stall_seconds`` counts as dead
(connected, nothing coming) and is replaced the same way. ``connected`` tells whether the venue's
assets are covered by the stream right now; the caller polls them while they are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

import aiohttp

from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task
from aggserver.venues.base import Ticker, VenueError
from aggserver.venues.stream_base import VenueStream

__all__ = ["Deliver", "StreamClient"]

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 30.0
# The largest frame accepted: Binance's all-market array for thousands of symbols is megabytes.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# How long closing a connection waits for the venue to acknowledge.
CLOSE_SECONDS = 2.0

CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)

# (venue, tickers, when they arrived in unix seconds)
Deliver = Callable[[str, list[Ticker], float], None]


class StreamClient:
    """One venue's stream, connected until stopped."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        stream: VenueStream,
        url: str,
        natives: Sequence[str],
        deliver: Deliver,
        *,
        stall_seconds: float = 10.0,
        keepalive_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._stream = stream
        self._url = url.rstrip("/") + stream.path
        self._natives = list(natives)
        self._wanted = frozenset(self._natives)
        self._deliver = deliver
        self._stall = stall_seconds
        self._keepalive = keepalive_seconds if keepalive_seconds is not None else stream.keepalive_seconds
        self._rng = rng or random.Random()
        self._stopping = False
        self.connected = False
        self._last_message = 0.0  # loop time
        self._silenced = False  # the watchdog closed the connection
        # Tickers arrived on the current connection (what makes it a replacement for polling).
        self.flowing = False
        self.last_delivery = 0.0  # unix time of the latest frame that brought tickers
        self.connects = 0
        self.stalls = 0
        self.tickers = 0
        self.rejected = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def venue(self) -> str:
        return self._stream.venue

    async def run(self) -> None:
        """Connect, read, reconnect, until :meth:`stop`."""
        backoff = Backoff(first=BACKOFF_START, cap=BACKOFF_MAX, jitter=True, rng=self._rng)
        while not self._stopping:
            try:
                if await self._connection():
                    backoff.reset()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                log.warning("%s stream: %s; reconnecting", self.venue, self.last_error)
            finally:
                self.connected = self.flowing = False
            # Full jitter: many instances cut off at once do not come back at once.
            await asyncio.sleep(backoff.next())

    async def stop(self, task: asyncio.Task[None]) -> None:
        self._stopping = True
        await stop_task(task)

    async def _connection(self) -> bool:
        """One connection, until it closes or stalls; whether it delivered any tickers."""
        loop = asyncio.get_running_loop()
        delivered = False
        async with self._session.ws_connect(
            self._url,
            autoping=True,
            max_msg_size=MAX_FRAME_BYTES,
            # A stalled venue may never answer our close: do not wait the default 10 s for it.
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_SECONDS),
        ) as ws:
            self.connects += 1
            for frame in self._stream.subscriptions(self._natives):
                await ws.send_str(frame)
            self.connected = True
            ping = self._stream.ping()
            keeper = None
            if ping is not None and self._keepalive:
                keeper = asyncio.create_task(self._keep_alive(ws, ping, self._keepalive))
            # A watchdog rather than a timeout on every receive: OKX and Bybit send a frame per
            # instrument, and 20,000 timers a second cost ~8 % of the process (py-spy).
            self._last_message, self._silenced = loop.time(), False
            watchdog = asyncio.create_task(self._watch(ws))
            try:
                while not self._stopping:
                    message = await ws.receive()
                    self._last_message = loop.time()
                    if message.type is aiohttp.WSMsgType.TEXT:
                        delivered |= self._read(message.data)
                    elif message.type in CLOSED:
                        if self._silenced:
                            self.stalls += 1
                            log.warning("%s stream silent for %.0f s; reconnecting", self.venue, self._stall)
                        else:
                            log.info("%s stream closed by the venue (%s)", self.venue, ws.close_code)
                        return delivered
                    elif message.type is aiohttp.WSMsgType.ERROR:
                        raise aiohttp.ClientError(f"stream error: {ws.exception()}")
            finally:
                for helper in (keeper, watchdog):
                    if helper is not None:
                        helper.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await helper
        return delivered

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close ``ws`` once nothing arrived for the stall time (the reader then reconnects)."""
        loop = asyncio.get_running_loop()
        while True:
            silent = loop.time() - self._last_message
            if silent >= self._stall:
                self._silenced = True
                await ws.close()
                return
            await asyncio.sleep(self._stall - silent)

    def _read(self, text: str) -> bool:
        try:
            frame = self._stream.parse(text, self._wanted)
        except VenueError as exc:
            # A refused subscription or a frame we cannot read: the rest of the stream is fine.
            self.errors += 1
            self.last_error = str(exc)[:200]
            log.warning("%s stream: %s", self.venue, self.last_error)
            return False
        if frame.rejected:
            self.rejected += len(frame.rejected)
        if not frame.tickers:
            return False
        self.tickers += len(frame.tickers)
        self.last_delivery = time.time()
        self._deliver(self.venue, frame.tickers, self.last_delivery)
        self.flowing = True
        return True

    @staticmethod
    async def _keep_alive(ws: aiohttp.ClientWebSocketResponse, ping: str, every: float) -> None:
        while not ws.closed:
            await asyncio.sleep(every)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(ping)
