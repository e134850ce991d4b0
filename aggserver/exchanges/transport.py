"""Sending one request to a venue: through its rate budget, its circuit breaker and its bound on
requests in flight, over the one pooled keep-alive session, with the body read within a size
limit and the answer judged by the venue's adapter. A failure is raised with its reason code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import orjson

from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.venues.base import RateLimited, VenueError, VenueRequest, retry_after_seconds

if TYPE_CHECKING:
    from aggserver.exchanges.registry import Exchange

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_BULK_BODY_BYTES",
    "ExchangeFailure",
    "Transport",
    "create_session",
]

log = logging.getLogger(__name__)

Parsed = TypeVar("Parsed")

# A ticker is a few hundred bytes; a venue's whole listing or all-tickers answer a few MB.
MAX_BODY_BYTES = 64 * 1024
MAX_BULK_BODY_BYTES = 16 * 1024 * 1024
# Where a venue reports the budget used this minute (Binance), pause at this share of it.
USED_SHARE_PAUSE = 0.9


class ExchangeFailure(Exception):
    """The exchange itself failed (transport, status, body): counts against its breaker."""

    def __init__(self, reason: str, *, code: ReasonCode, status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.status = status

    @property
    def rejection(self) -> QuoteRejected:
        return QuoteRejected(self.code, str(self))


def create_session(*, connections: int, timeout: float) -> aiohttp.ClientSession:
    """The shared client session; keep-alive connections are reused across refreshes."""
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        raise_for_status=False,
    )


class Transport:
    """Requests to the exchanges, each within its exchange's limits."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(
        self,
        exchange: Exchange,
        request: VenueRequest,
        limit: int,
        *,
        urgent: bool,
        parse: Callable[[object], Parsed],
    ) -> Parsed:
        """One request through the exchange's rate budget, breaker and concurrency bound; what
        ``parse`` makes of the decoded JSON. Raises ExchangeFailure, VenueError or Held; a rate
        limit however the venue says it (status or envelope) stops requests to it for a while."""
        await exchange.throttle.acquire(request.weight, urgent=urgent)
        if not exchange.breaker.allow():
            raise ExchangeFailure("circuit open", code=ReasonCode.BREAKER_OPEN)
        status, headers, content_type, body = await self._send(exchange, request, limit)
        payload = _decode(body) if body is not None else None
        try:
            exchange.venue.check_status(status, payload, headers)
        except RateLimited as exc:
            self._rate_limited(exchange, exc, headers)
            raise
        except VenueError as exc:
            self._failed(exchange)
            raise ExchangeFailure(str(exc), code=exc.code, status=status) from None
        if body is None:
            # An HTML error page from a proxy, say: whatever it holds is not a quote.
            self._failed(exchange)
            raise ExchangeFailure(f"content type {content_type} is not JSON", code=ReasonCode.BAD_BODY)
        self._answered(exchange, headers)
        if isinstance(payload, _NotJson):
            raise VenueError("body is not JSON")
        try:
            return parse(payload)
        except RateLimited as exc:
            self._rate_limited(exchange, exc, headers)
            raise

    async def _send(
        self, exchange: Exchange, request: VenueRequest, limit: int
    ) -> tuple[int, Mapping[str, str], str, bytes | None]:
        """The status, headers, content type and body (None unless declared JSON) of one request
        within the exchange's concurrency bound; a transport failure counts against the breaker."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        exchange.requests += 1
        try:
            async with (
                exchange.slots,
                self._session.get(
                    exchange.origin + request.path, params=request.params, timeout=self._timeout
                ) as response,
            ):
                declared_json = _declared_json(response.content_type)
                body = await _read_limited(response, limit) if declared_json else None
                return response.status, response.headers, response.content_type, body
        except TimeoutError:
            self._failed(exchange)
            raise ExchangeFailure("timed out", code=ReasonCode.TIMEOUT) from None
        except aiohttp.ClientError as exc:
            self._failed(exchange)
            raise ExchangeFailure(
                f"request failed: {type(exc).__name__}", code=ReasonCode.UNREACHABLE
            ) from None
        except (ExchangeFailure, asyncio.CancelledError):
            self._failed(exchange)
            raise
        finally:
            exchange.last_round_trip = loop.time() - started
            exchange.latency.observe(exchange.last_round_trip)

    @staticmethod
    def _answered(exchange: Exchange, headers: Mapping[str, str]) -> None:
        """A good answer: the breaker closes, the throttle learns how much budget is left."""
        exchange.breaker.success()
        exchange.throttle.answered()
        share = exchange.venue.used_share(headers, exchange.throttle.budget)
        if share is not None:
            exchange.used_share = share
            if share >= USED_SHARE_PAUSE:
                exchange.throttle.nearly_spent(60 - time.time() % 60)

    @staticmethod
    def _rate_limited(exchange: Exchange, exc: RateLimited, headers: Mapping[str, str]) -> None:
        # A Retry-After is honoured whatever the shape of the rest of the answer.
        retry_after = exc.retry_after if exc.retry_after is not None else retry_after_seconds(headers)
        pause = exchange.throttle.limited(retry_after)
        log.warning("%s rate-limited us (%s): no requests to it for %.0f s", exchange.name, exc, pause)

    @staticmethod
    def _failed(exchange: Exchange) -> None:
        exchange.errors += 1
        exchange.breaker.failure()


class _NotJson:
    """Stands for a body that did not decode, so the status can be judged first."""


def _declared_json(content_type: str) -> bool:
    # aiohttp reports a missing Content-Type as application/octet-stream; allow that too.
    return content_type in ("application/json", "text/json", "application/octet-stream") or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NotJson()


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ExchangeFailure(f"body larger than {limit} bytes", code=ReasonCode.BAD_BODY)
        chunks.append(chunk)
    return b"".join(chunks)
