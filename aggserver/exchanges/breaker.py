"""A per-exchange circuit breaker: closed, open, half-open with a single probe.

Written here rather than taken from a library: it is ~60 lines, needs no shared state across
processes, and has to expose its state for logs and metrics in our own terms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger(__name__)


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` failures in a row; after ``reset_seconds`` lets one
    probe through, which closes it on success or reopens it on failure."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._probe_started = 0.0
        self.state = BreakerState.CLOSED

    def allow(self) -> bool:
        """Whether a request may go out now; in half-open state only one at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self._reset_seconds:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        now = self._clock()
        # A probe that never reported back (cancelled) must not keep the circuit shut forever.
        if self.state is BreakerState.HALF_OPEN and (
            not self._probing or now - self._probe_started >= self._reset_seconds
        ):
            self._probing = True
            self._probe_started = now
            return True
        return False

    def success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            log.info("exchange %s recovered: circuit closed", self.name)
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self._failures >= self._threshold
        ):
            if self.state is BreakerState.CLOSED:
                log.warning(
                    "exchange %s failing: circuit opened after %d failures", self.name, self._failures
                )
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probing = False
