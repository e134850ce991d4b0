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

from aggserver.domain.aggregate import Aggregate

if TYPE_CHECKING:
    from aggserver.history.records import HistoryRecord

__all__ = ["CachedPrice", "encode_price", "sequenced"]


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
    last_updated_ms: int | None = None
    sources: int = 0
    dispersion: float | None = None
    ema_price: float | None = None
    # Assigned by Redis as the value is stored (``store/prices.py``); None until then.
    seq: int | None = None

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
            last_updated_ms=fields.get("last_updated_ms"),
            sources=int(fields.get("sources", 0)),
            dispersion=fields.get("dispersion"),
            ema_price=fields.get("ema_price"),
            seq=fields.get("seq"),
        )

    @property
    def exchange_time(self) -> float:
        """The exchanges' time of the price in seconds, to the millisecond where known."""
        return self.last_updated_ms / 1000 if self.last_updated_ms is not None else float(self.last_updated)

    def with_seq(self, seq: int) -> CachedPrice:
        """The value as Redis stored it: ``seq`` appended as the last field (``sequenced``)."""
        # Field by field: a fifth cheaper than dataclasses.replace, once per price stored.
        return CachedPrice(
            raw=sequenced(self.raw, seq),
            asset=self.asset,
            price=self.price,
            last_updated=self.last_updated,
            updated_at=self.updated_at,
            tier=self.tier,
            restored=self.restored,
            last_updated_ms=self.last_updated_ms,
            sources=self.sources,
            dispersion=self.dispersion,
            ema_price=self.ema_price,
            seq=seq,
        )

    def answer(self, *, age_seconds: int, stale: bool) -> bytes:
        """The GET body: the stored JSON with the age and staleness of this moment appended."""
        return b'%s,"age_seconds":%d,"stale":%s}' % (
            self.raw[:-1],
            age_seconds,
            b"true" if stale else b"false",
        )

    @classmethod
    def of(
        cls,
        aggregate: Aggregate,
        *,
        updated_at: int,
        tier: str,
        restored: bool = False,
        ema_price: float | None = None,
    ) -> CachedPrice:
        """A new aggregate as it will be stored (its JSON encoded once, here), before Redis
        gives it its ``seq``."""
        return cls(
            raw=encode_price(
                aggregate, updated_at=updated_at, tier=tier, restored=restored, ema_price=ema_price
            ),
            asset=aggregate.asset,
            price=aggregate.price,
            last_updated=aggregate.last_updated,
            updated_at=updated_at,
            tier=tier,
            restored=restored,
            last_updated_ms=aggregate.last_updated_ms,
            sources=aggregate.sources,
            dispersion=aggregate.dispersion if aggregate.sources else None,
            ema_price=ema_price,
        )

    @classmethod
    def restored_from(cls, record: HistoryRecord, *, tier: str) -> CachedPrice:
        """A price brought back from DynamoDB: marked ``restored`` so it is always served as stale."""
        aggregate = Aggregate(
            asset=record.asset, price=record.price, last_updated=record.timestamp, sources=0
        )
        return cls.of(aggregate, updated_at=record.updated_at, tier=tier, restored=True)


def sequenced(raw: bytes, seq: int) -> bytes:
    """``raw`` with ``"seq"`` as its last field: what the write script stores (byte for byte)."""
    return b'%s,"seq":%d}' % (raw[:-1], seq)


def encode_price(
    aggregate: Aggregate,
    *,
    updated_at: int,
    tier: str,
    restored: bool = False,
    ema_price: float | None = None,
) -> bytes:
    """The stored JSON: the three contract fields first, then what the server knows about them
    (``seq`` is appended by Redis as it stores the value)."""
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
    if ema_price is not None:
        fields["ema_price"] = ema_price
    fields["updated_at"] = updated_at
    fields["refresh_tier"] = tier
    if restored:
        fields["restored"] = True
    # orjson returns its output inside an allocation of at least 4 KiB; this value is kept
    # (the process's last seen price of every asset), so keep a right-sized copy: 10,000
    # assets held 39 MiB before (tracemalloc), 1.9 MiB after.
    return bytes(memoryview(orjson.dumps(fields)))
