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
from typing import Any

import aiohttp
import uvloop

from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.symbols import load_symbols

BATCH_CONNECTIONS = 8
BATCH_ASSETS = 1_000
WS_CONNECTIONS = 4
WS_ASSETS = 100
RECONNECT_SECONDS = 1.0
HISTORY_ASSET = "ethusdt"
HISTORY_PAGERS = 8
CANDLE_READERS = 4


async def flood(kind: str, url: str, seconds: float, source: str) -> dict[str, int]:
    symbols = load_symbols(DEFAULT_SYMBOLS_FILE).ordered
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def batches(worker: int) -> None:
            assets = ",".join(symbols[worker * BATCH_ASSETS : (worker + 1) * BATCH_ASSETS])
            while time.monotonic() < deadline:
                async with session.get(f"{url}/prices", params={"assets": assets}) as response:
                    await response.read()
                    counts[str(response.status)] += 1
                    if response.status == 429:
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

        async def sockets(worker: int) -> None:
            names = list(symbols[worker * WS_ASSETS : (worker + 1) * WS_ASSETS])
            while time.monotonic() < deadline:
                try:
                    async with session.ws_connect(f"{url}/ws") as socket:
                        counts["connections"] += 1
                        while time.monotonic() < deadline and not socket.closed:
                            for op in ("subscribe", "unsubscribe"):
                                await socket.send_json({"op": op, "assets": names})
                                counts["messages"] += 1
                        counts[f"closed {socket.close_code}"] += 1
                except (aiohttp.ClientError, ConnectionError):
                    counts["connect errors"] += 1
                await asyncio.sleep(RECONNECT_SECONDS)

        async def answer(path: str, params: dict[str, str]) -> dict[str, Any] | None:
            async with session.get(f"{url}{path}", params=params) as response:
                body = await response.read()
                counts[f"{path.rsplit('/', 1)[-1]} {response.status}"] += 1
                if response.status == 429:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    return None
                return json.loads(body) if response.status == 200 else None

        async def pages() -> None:
            cursor: str | None = None
            while time.monotonic() < deadline:
                params = {"limit": "1000"}
                if cursor:
                    params["cursor"] = cursor
                page = await answer(f"/prices/{HISTORY_ASSET}/history", params)
                if page is not None:
                    cursor = page["next_cursor"]

        async def candles() -> None:
            while time.monotonic() < deadline:
                now = int(time.time())
                await answer(
                    f"/prices/{HISTORY_ASSET}/candles",
                    {"interval": "1m", "from": str(now - 999 * 60), "to": str(now)},
                )

        if kind == "batch":
            await asyncio.gather(*(batches(i) for i in range(BATCH_CONNECTIONS)))
        elif kind == "history":
            await asyncio.gather(
                *(pages() for _ in range(HISTORY_PAGERS)), *(candles() for _ in range(CANDLE_READERS))
            )
        else:
            await asyncio.gather(*(sockets(i) for i in range(WS_CONNECTIONS)))
    return dict(counts)


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
