"""A history record and its DynamoDB item: one aggregate as the ``prices`` table keeps it.

A pure value type: the refresh path makes records, the outbox carries them, the writer stores
their items and the history reads decode items back. A record's key is (asset, timestamp), so
writing one again overwrites it with the same item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["HistoryRecord", "format_number", "record_decoder"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRecord:
    """One aggregate as stored: ``timestamp`` is the exchanges' time, ``updated_at`` ours."""

    asset: str
    timestamp: int
    price: float
    updated_at: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> HistoryRecord:
        return cls(
            asset=item["asset"]["S"],
            timestamp=int(item["timestamp"]["N"]),
            price=float(item["price"]["N"]),
            updated_at=int(item.get("updated_at", item["timestamp"])["N"]),
        )

    def to_item(self) -> dict[str, Any]:
        return {
            "asset": {"S": self.asset},
            "timestamp": {"N": str(self.timestamp)},
            "price": {"N": format_number(self.price)},
            "updated_at": {"N": str(self.updated_at)},
        }


def record_decoder(asset: str) -> Callable[[dict[str, Any]], HistoryRecord]:
    """Records of ``asset`` from the items of a :func:`range_query`."""

    def decode(item: dict[str, Any]) -> HistoryRecord:
        return HistoryRecord(
            asset=asset,
            timestamp=int(item["timestamp"]["N"]),
            price=float(item["price"]["N"]),
            updated_at=int(item.get("updated_at", item["timestamp"])["N"]),
        )

    return decode


def format_number(value: float) -> str:
    """A float as a DynamoDB number: plain decimal notation, every digit of its repr kept."""
    return format(Decimal(repr(value)), "f")
