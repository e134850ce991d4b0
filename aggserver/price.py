"""The price value: one asset's latest aggregate as stored, announced and answered.

Stored as ready-to-send JSON. A GET answers with those bytes plus two fields computed at answer
time (``age_seconds``, ``stale``) spliced onto the end, so an unchanged price is never decoded and
re-encoded per request. A new field is one change here (``encode_price``, and ``CachedPrice`` if
the server itself needs it) plus the contract in ``openapi.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from aggserver.aggregate import Aggregate

if TYPE_CHECKING:
    from aggserver.records import HistoryRecord

__all__ = ["CachedPrice", "encode_price"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedPrice:
    """A stored price, decoded once: its JSON without the closing brace, and what freshness needs."""

    raw: bytes
    asset: str
    price: float
    last_updated: int
    updated_at: int
    tier: str
    restored: bool

    @classmethod
    def decode(cls, raw: bytes) -> CachedPrice:
        fields = orjson.loads(raw)
        return cls(
            raw=raw,
            asset=str(fields["asset"]),
            price=float(fields["price"]),
            last_updated=int(fields["last_updated"]),
            updated_at=int(fields.get("updated_at", 0)),
            tier=str(fields.get("refresh_tier", "cold")),
            restored=bool(fields.get("restored", False)),
        )

    def answer(self, *, age_seconds: int, stale: bool) -> bytes:
        """The GET body: the stored JSON with the age and staleness of this moment appended."""
        return b'%s,"age_seconds":%d,"stale":%s}' % (
            self.raw[:-1],
            age_seconds,
            b"true" if stale else b"false",
        )

    @classmethod
    def of(cls, aggregate: Aggregate, *, updated_at: int, tier: str, restored: bool = False) -> CachedPrice:
        """A new aggregate as it will be stored (its JSON encoded once, here)."""
        return cls(
            raw=encode_price(aggregate, updated_at=updated_at, tier=tier, restored=restored),
            asset=aggregate.asset,
            price=aggregate.price,
            last_updated=aggregate.last_updated,
            updated_at=updated_at,
            tier=tier,
            restored=restored,
        )

    @classmethod
    def restored_from(cls, record: HistoryRecord, *, tier: str) -> CachedPrice:
        """A price brought back from DynamoDB: marked ``restored`` so it is always served as stale."""
        aggregate = Aggregate(
            asset=record.asset, price=record.price, last_updated=record.timestamp, sources=0
        )
        return cls.of(aggregate, updated_at=record.updated_at, tier=tier, restored=True)


def encode_price(aggregate: Aggregate, *, updated_at: int, tier: str, restored: bool = False) -> bytes:
    """The stored JSON: the three contract fields first, then what the server knows about them."""
    fields: dict[str, object] = {
        "asset": aggregate.asset,
        "price": aggregate.price,
        "last_updated": aggregate.last_updated,
    }
    if aggregate.last_updated_ms is not None:
        fields["last_updated_ms"] = aggregate.last_updated_ms
    if aggregate.sources:
        fields["sources"] = aggregate.sources
        fields["dispersion"] = aggregate.dispersion
    fields["updated_at"] = updated_at
    fields["refresh_tier"] = tier
    if restored:
        fields["restored"] = True
    # orjson returns its output inside an allocation of at least 4 KiB; this value is kept
    # (the process's last seen price of every asset), so keep a right-sized copy: 10,000
    # assets held 39 MiB before (tracemalloc), 1.9 MiB after.
    return bytes(memoryview(orjson.dumps(fields)))
