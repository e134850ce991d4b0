"""Quality guards a client puts on a price: at least ``min_sources`` venues, at most
``max_dispersion`` between them. Pure: the reader applies them to GET, batch reads and streams.

Every integrator of a price feed writes these checks itself, and audits keep finding them
missing or wrong; here a price that fails is refused with the rule it broke and both values.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggserver.domain.price import CachedPrice
from aggserver.domain.reasons import ReasonCode

__all__ = ["QualityGuard", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a price failed a guard: the rule, the price's value and the client's limit."""

    reason_code: ReasonCode
    rule: str
    actual: float | None
    required: float

    @property
    def reason(self) -> str:
        if self.rule == "min_sources":
            return f"{self.actual:g} sources, at least {self.required:g} required"
        shown = "unknown" if self.actual is None else f"{self.actual:g}"
        return f"dispersion {shown}, at most {self.required:g} allowed"

    def answer(self, asset: str) -> dict[str, object]:
        return {
            "asset": asset,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "rule": self.rule,
            "actual": self.actual,
            "required": self.required,
        }


@dataclass(frozen=True, slots=True)
class QualityGuard:
    min_sources: int | None = None
    max_dispersion: float | None = None

    def check(self, price: CachedPrice) -> Rejection | None:
        """The first rule ``price`` fails, or None. A price restored from history has no
        sources and no known dispersion: it fails either rule."""
        if self.min_sources is not None and price.sources < self.min_sources:
            return Rejection(ReasonCode.TOO_FEW_SOURCES, "min_sources", price.sources, self.min_sources)
        if self.max_dispersion is not None and (
            price.dispersion is None or price.dispersion > self.max_dispersion
        ):
            return Rejection(
                ReasonCode.TOO_DISPERSED, "max_dispersion", price.dispersion, self.max_dispersion
            )
        return None
