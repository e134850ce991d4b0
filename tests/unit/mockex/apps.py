"""Mock exchanges started in-process for the unit tests, on a clock the test holds."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from mockex.app import create_app
from mockex.symbols import DEFAULT_SYMBOLS_FILE, SymbolList, load_symbols

__all__ = ["NOW", "SYMBOLS", "Clock", "exchange"]

SYMBOLS = load_symbols(DEFAULT_SYMBOLS_FILE)
NOW = 1_700_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def exchange(
    name: str = "exchange1",
    seed: int = 1,
    clock: Clock | None = None,
    venue: str | None = None,
    listed: SymbolList | None = None,
    symbols: SymbolList = SYMBOLS,
    own_paths: frozenset[str] | None = None,
) -> TestClient[Any, Any]:
    """A started test client of one mock exchange; the caller closes it."""
    app = create_app(
        name=name,
        symbols=symbols,
        seed=seed,
        clock=clock or Clock(NOW),
        venue=venue,
        listed=listed,
        own_paths=own_paths,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client
