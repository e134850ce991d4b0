"""What every venue's ticker stream provides: the frames it sends and parses, pure like the REST
adapters (connecting, keep-alive timing and reconnects live in ``exchanges/stream_client.py``);
each venue's stream is beside its REST adapter (``venues/binance.py``, ``okx.py``, ``bybit.py``).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from aggserver.domain.reasons import QuoteRejected
from aggserver.venues.base import Ticker, VenueError, number

__all__ = ["Frame", "VenueStream", "batches", "frame_json", "subscribe_message"]


@dataclass(slots=True)
class Frame:
    """What one received frame carried: tickers, and the names of tickers it spoiled with the
    reason (a bad field spoils only its own ticker, as in the REST answers)."""

    tickers: list[Ticker] = field(default_factory=list)
    rejected: list[tuple[str, QuoteRejected]] = field(default_factory=list)

    def add(
        self,
        native: str,
        item: dict[str, Any],
        price: str,
        volume: str,
        time: str,
        *,
        stamped: dict[str, Any],
    ) -> None:
        """The ticker of ``native`` from ``item``'s fields named ``price`` and ``volume`` and
        ``stamped``'s field ``time`` (ms), or the reason it is unusable."""
        try:
            self.tickers.append(
                Ticker(
                    native=native,
                    price=number(item.get(price), price),
                    volume=number(item.get(volume), volume),
                    timestamp_ms=number(stamped.get(time), time),
                )
            )
        except VenueError as exc:
            self.rejected.append((native, exc.rejection))


def batches(names: Sequence[str], size: int) -> list[Sequence[str]]:
    return [names[start : start + size] for start in range(0, len(names), size)]


class VenueStream:
    """One venue's ticker stream; subclasses fill in the venue's vocabulary."""

    venue: ClassVar[str]
    # The public endpoint's origin; EXCHANGE_STREAMS overrides it.
    default_url: ClassVar[str]
    path: ClassVar[str]
    # Seconds between the client's own keep-alive messages; None when the venue pings us.
    keepalive_seconds: ClassVar[float | None] = None

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        """The text frames that subscribe to ``natives`` (none for an all-market stream)."""
        return []

    def ping(self) -> str | None:
        """The keep-alive frame the client sends, if the venue wants one."""
        return None

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        """The tickers in one text frame (none for acknowledgements and pongs); VenueError for
        a frame that says the venue refused something or that is not what the venue sends.
        An all-market stream keeps only the instruments in ``wanted`` (None: all of them),
        before reading their fields: a sharded owner keeps a fraction of every frame."""
        raise NotImplementedError


def subscribe_message(args: list[Any]) -> str:
    return orjson.dumps({"op": "subscribe", "args": args}).decode()


def frame_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise VenueError(f"stream frame is not JSON: {text[:40]!r}") from None
