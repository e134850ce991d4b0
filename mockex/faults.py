"""Fault settings an exchange can be switched into at run time."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ANSWER_KINDS",
    "DRIP_SECONDS",
    "GARBAGE_KINDS",
    "HUGE_BODY_BYTES",
    "MODES",
    "Faults",
    "FaultsError",
]

MODES = ("ok", "down", "slow", "garbage", "outlier", "rate_limited", "venue_error", "held")
GARBAGE_KINDS = (
    "not_json",
    "wrong_symbol",
    "string_price",
    "nan_price",
    "negative_price",
    "zero_price",
    "negative_volume",
    "missing_fields",
    "not_object",
    "infinity_price",
    "string_volume",
    # These spoil the whole answer rather than one quote in it:
    "huge_body",
    "slow_drip",
    "wrong_content_type",
)
# Kinds that shape the HTTP answer itself (size, pace, content type) instead of a quote.
ANSWER_KINDS = ("huge_body", "slow_drip", "wrong_content_type")
HUGE_BODY_BYTES = 8 * 1024 * 1024
# slow_drip sends one byte per this many seconds (a whole quote takes minutes).
DRIP_SECONDS = 0.1
SLOW_DEFAULT_MS = 5_000


class FaultsError(ValueError):
    """A fault setting that cannot be applied."""


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What an exchange does wrong; the default does nothing wrong."""

    mode: str = "ok"
    latency_ms: int = 0
    error_rate: float = 0.0
    price_factor: float = 1.0
    # None rotates through every kind of garbage, request by request.
    garbage_kind: str | None = None
    # mode rate_limited: the Retry-After (seconds) sent with the venue's rate-limit answer.
    retry_after: int | None = None

    @property
    def delay_seconds(self) -> float:
        if self.latency_ms:
            return self.latency_ms / 1000
        return SLOW_DEFAULT_MS / 1000 if self.mode == "slow" else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: object) -> Faults:
        """Parse a fault setting; fields left out take their defaults."""
        if not isinstance(body, dict):
            raise FaultsError("body must be a JSON object")
        unknown = set(body) - {
            "mode",
            "latency_ms",
            "error_rate",
            "price_factor",
            "garbage_kind",
            "retry_after",
        }
        if unknown:
            raise FaultsError(f"unknown fields: {sorted(unknown)}")
        mode = body.get("mode", "ok")
        if mode not in MODES:
            raise FaultsError(f"mode must be one of {list(MODES)}")
        latency = body.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= 600_000:
            raise FaultsError("latency_ms must be a whole number from 0 to 600000")
        rate = body.get("error_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultsError("error_rate must be a number from 0 to 1")
        factor = body.get("price_factor", 1.0)
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
            raise FaultsError("price_factor must be a finite number")
        kind = body.get("garbage_kind")
        if kind is not None and kind not in GARBAGE_KINDS:
            raise FaultsError(f"garbage_kind must be one of {list(GARBAGE_KINDS)}")
        retry_after = body.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int)
            or not 0 <= retry_after <= 86_400
        ):
            raise FaultsError("retry_after must be a whole number of seconds from 0 to 86400, or null")
        return cls(
            retry_after=retry_after,
            mode=mode,
            latency_ms=latency,
            error_rate=float(rate),
            price_factor=float(factor),
            garbage_kind=kind,
        )
