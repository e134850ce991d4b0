"""``python -m bench.abuse KIND URL SECONDS``: one abusive client, for the ``abuse`` suite.

``batch``: 8 connections asking ``GET /prices?assets=`` with 1,000 assets each, back to back.
``ws``: 4 WebSockets each sending subscribe/unsubscribe of 100 assets as fast as it can,
reconnecting a second after it is closed. ``history``: 8 connections paging
``/prices/ethusdt/history?limit=1000`` through its cursors (from the top again at the end) and 4
asking ``/prices/ethusdt/candles`` for the 1,000 newest 1m candles, back to back. All wait out a
429's ``Retry-After`` as client libraries do: a client that ignores it floods with cheap
requests instead, which only limits on connections (a proxy, a firewall) can stop. The client
binds to ``--source`` (another loopback address than wrk's 127.0.0.1), so the server sees a
client of its own. Prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import uvloop

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE

BATCH_CONNECTIONS = 8
BATCH_ASSETS = 1_000
WS_CONNECTIONS = 4
WS_ASSETS = 100
RECONNECT_SECONDS = 1.0
HISTORY_ASSET = "ethusdt"
HISTORY_PAGERS = 8
CANDLE_READERS = 4


@dataclass
class Flooder:
    """The abusive client's workers, sharing one session, one deadline and the counts."""

    session: aiohttp.ClientSession
    url: str
    deadline: float
    symbols: Sequence[str]
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def going(self) -> bool:
        return time.monotonic() < self.deadline

    async def batches(self, worker: int) -> None:
        assets = ",".join(self.symbols[worker * BATCH_ASSETS : (worker + 1) * BATCH_ASSETS])
        while self.going():
            async with self.session.get(f"{self.url}/prices", params={"assets": assets}) as response:
                await response.read()
                self.counts[str(response.status)] += 1
                await _wait_out(response)

    async def sockets(self, worker: int) -> None:
        names = list(self.symbols[worker * WS_ASSETS : (worker + 1) * WS_ASSETS])
        while self.going():
            try:
                async with self.session.ws_connect(f"{self.url}/ws") as socket:
                    self.counts["connections"] += 1
                    await self._churn(socket, names)
                    self.counts[f"closed {socket.close_code}"] += 1
            except (aiohttp.ClientError, ConnectionError):
                self.counts["connect errors"] += 1
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _churn(self, socket: aiohttp.ClientWebSocketResponse, names: list[str]) -> None:
        while self.going() and not socket.closed:
            for op in ("subscribe", "unsubscribe"):
                await socket.send_json({"op": op, "assets": names})
                self.counts["messages"] += 1

    async def _answer(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            body = await response.read()
            self.counts[f"{path.rsplit('/', 1)[-1]} {response.status}"] += 1
            if await _wait_out(response):
                return None
            return json.loads(body) if response.status == 200 else None

    async def pages(self) -> None:
        cursor: str | None = None
        while self.going():
            params = {"limit": "1000"}
            if cursor:
                params["cursor"] = cursor
            page = await self._answer(f"/prices/{HISTORY_ASSET}/history", params)
            if page is not None:
                cursor = page["next_cursor"]

    async def candles(self) -> None:
        while self.going():
            now = int(time.time())
            await self._answer(
                f"/prices/{HISTORY_ASSET}/candles",
                {"interval": "1m", "from": str(now - 999 * 60), "to": str(now)},
            )


async def _wait_out(response: aiohttp.ClientResponse) -> bool:
    """Whether ``response`` was a 429, after sleeping its ``Retry-After``."""
    if response.status != 429:
        return False
    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    return True


def _batch_flood(flooder: Flooder) -> list[Awaitable[None]]:
    return [flooder.batches(i) for i in range(BATCH_CONNECTIONS)]


def _history_flood(flooder: Flooder) -> list[Awaitable[None]]:
    return [
        *(flooder.pages() for _ in range(HISTORY_PAGERS)),
        *(flooder.candles() for _ in range(CANDLE_READERS)),
    ]


def _ws_flood(flooder: Flooder) -> list[Awaitable[None]]:
    return [flooder.sockets(i) for i in range(WS_CONNECTIONS)]


FLOODS: dict[str, Callable[[Flooder], list[Awaitable[None]]]] = {
    "batch": _batch_flood,
    "history": _history_flood,
    "ws": _ws_flood,
}


async def flood(kind: str, url: str, seconds: float, source: str) -> dict[str, int]:
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE).ordered
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        flooder = Flooder(session, url, deadline, symbols)
        # The command line offers only these kinds; a caller's other kind gets the ws flood.
        await asyncio.gather(*FLOODS.get(kind, _ws_flood)(flooder))
    return dict(flooder.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["batch", "ws", "history"])
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--source", default="127.0.0.2", help="loopback address to send from")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(flood(args.kind, args.url, args.seconds, args.source))), flush=True)


if __name__ == "__main__":
    main()
