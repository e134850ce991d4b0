"""``python -m bench.flows [--tree DIR]``: which of aggserver's modules five flows pass through.

The flows: a GET answered from the near-cache, a polling refresh round, a ticker pushed by a
venue's stream, records written to DynamoDB, and a history page. Each runs in-process against
real services (redis-server, a DynamoDB-compatible server, mockex and its binance personality)
while a profiler notes every call into an ``aggserver`` module and the chain of aggserver
modules beneath it. Printed per flow: how many modules it passes through, which, and any module
it enters twice (A, then B, then A again on one call chain).

``--tree`` names another checkout to measure (``git worktree add /tmp/before <commit>``): the
modules are imported from there, under either package layout (flat, or by area since issue 27).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

# Where each piece lives in the flat layout and in the layout by area.
LOCATIONS = {
    "create_app": ("aggserver.web.app", "aggserver.app"),
    "keys": ("aggserver.web.keys", "aggserver.appkeys"),
    "settings": ("aggserver.settings", "aggserver.settings"),
}
# The modules a flow's calls start from (the roots of its call chains), in either layout: the
# other chains in a window are background loops (the writer, the lease, pub/sub) doing their own.
_WEB = ("aggserver.web.guard", "aggserver.web.responses", "aggserver.responses")
ROOTS = {
    "GET from the near-cache": _WEB,
    "history page": _WEB,
    "polling round (500 assets)": (
        "aggserver.engine.refresh",
        "aggserver.exchanges.client",
        "aggserver.store.prices",
        "aggserver.refresh",
        "aggserver.exchanges",
        "aggserver.cache",
    ),
    "pushed ticker": (
        "aggserver.exchanges.stream_client",
        "aggserver.exchanges.ingest",
        "aggserver.stream_ingest",
        "aggserver.ingest",
    ),
    "record to DynamoDB": ("aggserver.history.writer", "aggserver.history_writer"),
}


def _load(piece: str) -> Any:
    for name in LOCATIONS[piece]:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(piece)


class Tracer:
    """Every call into aggserver while on, as the chain of aggserver modules it was made from."""

    def __init__(self) -> None:
        self.chains: set[tuple[str, ...]] = set()

    def _profile(self, frame: FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("aggserver"):
            return
        chain: list[str] = []
        walk: FrameType | None = frame
        while walk is not None:
            module = walk.f_globals.get("__name__", "")
            if module.startswith("aggserver") and (not chain or chain[-1] != module):
                chain.append(module)
            walk = walk.f_back
        self.chains.add(tuple(reversed(chain)))

    @contextmanager
    def on(self) -> Iterator[None]:
        sys.setprofile(self._profile)
        try:
            yield
        finally:
            sys.setprofile(None)

    def report(self, flow: str) -> None:
        roots = ROOTS[flow]
        chains = [c for c in self.chains if c and c[0] in roots]
        modules = sorted({m for chain in chains for m in chain if not m.endswith("__init__")})
        twice = sorted({m for chain in chains for m in chain if chain.count(m) > 1})
        short = [m.removeprefix("aggserver.") for m in modules]
        print(f"{flow}: {len(modules)} modules; entered twice: {', '.join(twice) or 'none'}")
        packages = sorted({m.split(".")[1] for m in modules if m.count(".") >= 2})
        print(f"    {', '.join(short)}")
        print(f"    packages: {', '.join(packages) or '(flat)'}")
        for chain in sorted(c for c in chains if any(c.count(m) > 1 for m in c))[:3]:
            print("    twice on:", " > ".join(m.removeprefix("aggserver.") for m in chain))


async def _wait(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the stack did not get there in time")
        await asyncio.sleep(0.05)


async def _flows(redis_url: str, dynamo_url: str, mockex_url: str, binance_url: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    settings_module, keys, app_module = _load("settings"), _load("keys"), _load("create_app")
    base = {
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamo_url,
        "PRICES_TABLE": f"flows-{uuid.uuid4().hex[:8]}",
        "EXCHANGE_URLS": f"{mockex_url}/mock/ticker",
        "AUTO_REFRESH": "false",
        "HISTORY_WRITER": "inline",
        "DATA_PLANE": "inline",
        "REFRESH_MIN_INTERVAL_SECONDS": "0",
        "REFRESH_RATE_LIMIT": "0",
        "CLIENT_BUDGET_UNITS_PER_SECOND": "0",
    }
    settings = settings_module.Settings.from_env(base)
    async with TestClient(TestServer(app_module.create_app(settings))) as client:
        app = client.app
        assets = list(app[keys.SYMBOLS].ordered[:500])
        await (await client.post("/refresh/btcusdt")).read()
        # Read twice: the second read fills the near-cache, the third is answered from it.
        for _ in range(2):
            await (await client.get("/prices/btcusdt")).read()
        tracer = Tracer()
        with tracer.on():
            assert (await client.get("/prices/btcusdt")).status == 200
        tracer.report("GET from the near-cache")

        tracer = Tracer()
        with tracer.on():
            await app[keys.REFRESHER].refresh_many(assets)
        tracer.report("polling round (500 assets)")

        tracer = Tracer()
        with tracer.on():
            # A new record, then the writer's part: read from the outbox, written, acknowledged.
            fresh = app[keys.SYMBOLS].ordered[700]  # not refreshed by the round above
            await (await client.post(f"/refresh/{fresh}")).read()
            await _wait(lambda: _history_written(client, fresh), timeout=30)
        tracer.report("record to DynamoDB")

        tracer = Tracer()
        with tracer.on():
            assert (await client.get("/prices/btcusdt/history?limit=100")).status == 200
        tracer.report("history page")

    streaming = settings_module.Settings.from_env(
        {**base, "EXCHANGE_URLS": "", "EXCHANGES": f"binance={binance_url}", "AUTO_REFRESH": "true"}
    )
    async with TestClient(TestServer(app_module.create_app(streaming))) as client:
        app = client.app
        await _wait(lambda: _streaming(app, keys), timeout=30)
        tracer = Tracer()
        with tracer.on():
            await asyncio.sleep(2.0)  # a window of pushed tickers, aggregated and stored
        tracer.report("pushed ticker")


async def _history_written(client: Any, asset: str) -> bool:
    answer = await client.get(f"/prices/{asset}/history?limit=1")
    return bool(answer.status == 200 and (await answer.json()).get("records"))


async def _streaming(app: Any, keys: Any) -> bool:
    ingestor = app[keys.INGESTOR]
    return any(getattr(c, "flowing", False) for c in ingestor.clients.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flows", description=__doc__)
    parser.add_argument("--tree", type=Path, help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
        for name in [m for m in sys.modules if m == "aggserver" or m.startswith("aggserver.")]:
            del sys.modules[name]
    from devstack.services import DUMMY_AWS_ENV, start_dynamo, start_mockex, start_redis

    os.environ.update(DUMMY_AWS_ENV)
    import uvloop

    with ExitStack() as stack:
        services = [
            start_redis(),
            start_dynamo(),
            start_mockex(name="exchange1", seed=7),
            start_mockex(name="binance", venue="binance", listed=40, seed=7),
        ]
        for service in services:
            stack.callback(service.stop)
        redis, dynamo, mockex, binance = services
        uvloop.run(_flows(redis.url, dynamo.url, mockex.url, binance.url))


if __name__ == "__main__":
    main()
