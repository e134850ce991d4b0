"""Exchange clients: one pooled keep-alive session, a circuit breaker and a concurrency bound per
exchange, single-symbol and bulk fetches. An exchange's failure becomes a reason, never an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import orjson

from aggserver.aggregate import InvalidQuote, Quote, parse_quote
from aggserver.breaker import CircuitBreaker
from aggserver.metrics import Histogram

__all__ = [
    "MAX_BODY_BYTES",
    "Exchange",
    "ExchangeClient",
    "FetchResult",
    "bulk_url",
    "create_session",
    "source_name",
]

# A ticker is ~100 bytes; a bulk answer ~100 bytes a symbol. Larger bodies are not read on.
MAX_BODY_BYTES = 64 * 1024
MAX_BULK_BODY_BYTES = 4 * 1024 * 1024
BULK_CHUNK = 500


class ExchangeFailure(Exception):
    """The exchange itself failed (transport, status, body): counts against its breaker."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """Every exchange's answer for one asset: the usable quotes and why the others were not."""

    quotes: list[Quote] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def source_name(url: str) -> str:
    """A short, stable name for an exchange: its host and port."""
    return urlsplit(url).netloc or url


def bulk_url(ticker_url: str) -> str | None:
    """The bulk endpoint beside a ``.../ticker`` base URL (``.../tickers``), if it follows that shape."""
    return ticker_url + "s" if ticker_url.endswith("/ticker") else None


def create_session(*, connections: int, timeout: float) -> aiohttp.ClientSession:
    """The shared client session; keep-alive connections are reused across refreshes."""
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        raise_for_status=False,
    )


@dataclass(kw_only=True)
class Exchange:
    """One configured exchange with its own breaker and bound on requests in flight."""

    name: str
    url: str
    bulk_url: str | None
    breaker: CircuitBreaker
    slots: asyncio.Semaphore
    requests: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)

    @classmethod
    def from_url(
        cls, url: str, *, bulk: bool, concurrency: int, breaker_failures: int, breaker_reset: float
    ) -> Exchange:
        name = source_name(url)
        return cls(
            name=name,
            url=url,
            bulk_url=bulk_url(url) if bulk else None,
            breaker=CircuitBreaker(name, failure_threshold=breaker_failures, reset_seconds=breaker_reset),
            slots=asyncio.Semaphore(concurrency),
        )


class ExchangeClient:
    """Fetches assets from every configured exchange at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        urls: Sequence[str],
        *,
        timeout: float,
        budget: float | None = None,
        bulk: bool = True,
        concurrency: int = 32,
        breaker_failures: int = 5,
        breaker_reset: float = 5.0,
    ) -> None:
        self._session = session
        self.exchanges = [
            Exchange.from_url(
                url,
                bulk=bulk,
                concurrency=concurrency,
                breaker_failures=breaker_failures,
                breaker_reset=breaker_reset,
            )
            for url in urls
        ]
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._budget = budget if budget is not None else timeout * 1.5

    async def fetch(self, symbol: str) -> FetchResult:
        """All exchanges' quotes for ``symbol`` within the refresh budget."""
        tasks = {
            asyncio.ensure_future(self._fetch_one(exchange, symbol)): exchange for exchange in self.exchanges
        }
        done, pending = await asyncio.wait(tasks, timeout=self._budget)
        for task in pending:
            task.cancel()
        result = FetchResult()
        for task, exchange in tasks.items():
            outcome = task.result() if task in done else "timed out (refresh budget)"
            if isinstance(outcome, Quote):
                result.quotes.append(outcome)
            else:
                result.rejected[exchange.name] = outcome
        return result

    async def fetch_many(self, symbols: Sequence[str]) -> dict[str, FetchResult]:
        """Quotes for many symbols: bulk requests where an exchange has them, else one per symbol."""
        results = {symbol: FetchResult() for symbol in symbols}
        await asyncio.gather(*(self._fetch_from(exchange, symbols, results) for exchange in self.exchanges))
        return results

    async def _fetch_from(
        self, exchange: Exchange, symbols: Sequence[str], results: dict[str, FetchResult]
    ) -> None:
        if exchange.bulk_url is None:
            outcomes = await asyncio.gather(*(self._fetch_one(exchange, s) for s in symbols))
            for symbol, outcome in zip(symbols, outcomes, strict=True):
                _record(results[symbol], exchange.name, outcome)
            return
        chunks = [symbols[i : i + BULK_CHUNK] for i in range(0, len(symbols), BULK_CHUNK)]
        answers = await asyncio.gather(*(self._fetch_bulk(exchange, c) for c in chunks))
        for chunk, answer in zip(chunks, answers, strict=True):
            for symbol in chunk:
                _record(results[symbol], exchange.name, answer if isinstance(answer, str) else answer[symbol])

    async def _fetch_one(self, exchange: Exchange, symbol: str) -> Quote | str:
        try:
            body = await self._get(exchange, f"{exchange.url}/{symbol}", None, MAX_BODY_BYTES)
            return parse_quote(_decode(body), source=exchange.name, symbol=symbol)
        except ExchangeFailure as exc:
            return str(exc)
        except InvalidQuote as exc:
            return f"invalid quote: {exc}"

    async def _fetch_bulk(self, exchange: Exchange, symbols: Sequence[str]) -> dict[str, Quote | str] | str:
        assert exchange.bulk_url is not None
        try:
            body = await self._get(
                exchange, exchange.bulk_url, {"symbols": ",".join(symbols)}, MAX_BULK_BODY_BYTES
            )
            payload = _decode(body)
        except ExchangeFailure as exc:
            if exc.status != 404:
                return str(exc)
            # No bulk endpoint after all: one request per symbol, now and from now on.
            exchange.bulk_url = None
            outcomes = await asyncio.gather(*(self._fetch_one(exchange, s) for s in symbols))
            return dict(zip(symbols, outcomes, strict=True))
        except InvalidQuote as exc:
            return f"invalid bulk answer: {exc}"
        if not isinstance(payload, list):
            return "invalid bulk answer: not a JSON array"
        answers: dict[str, Quote | str] = dict.fromkeys(symbols, "missing from bulk answer")
        for item in payload:
            symbol = item.get("symbol") if isinstance(item, dict) else None
            if isinstance(symbol, str) and symbol.lower() in answers:
                try:
                    answers[symbol.lower()] = parse_quote(item, source=exchange.name, symbol=symbol.lower())
                except InvalidQuote as exc:
                    answers[symbol.lower()] = f"invalid quote: {exc}"
        return answers

    async def _get(self, exchange: Exchange, url: str, params: dict[str, str] | None, limit: int) -> bytes:
        """One request through the exchange's breaker and concurrency bound."""
        if not exchange.breaker.allow():
            raise ExchangeFailure("circuit open")
        loop = asyncio.get_running_loop()
        started = loop.time()
        exchange.requests += 1
        try:
            async with (
                exchange.slots,
                self._session.get(url, params=params, timeout=self._timeout) as response,
            ):
                if response.status != 200:
                    raise ExchangeFailure(f"HTTP {response.status}", status=response.status)
                if not _declared_json(response.content_type):
                    # An HTML error page from a proxy, say: whatever it holds is not a quote.
                    raise ExchangeFailure(f"content type {response.content_type} is not JSON")
                body = await _read_limited(response, limit)
        except TimeoutError:
            self._failed(exchange)
            raise ExchangeFailure("timed out") from None
        except aiohttp.ClientError as exc:
            self._failed(exchange)
            raise ExchangeFailure(f"request failed: {type(exc).__name__}") from None
        except (ExchangeFailure, asyncio.CancelledError):
            self._failed(exchange)
            raise
        finally:
            exchange.latency.observe(loop.time() - started)
        exchange.breaker.success()
        return body

    @staticmethod
    def _failed(exchange: Exchange) -> None:
        exchange.errors += 1
        exchange.breaker.failure()


def _record(result: FetchResult, source: str, outcome: Quote | str) -> None:
    if isinstance(outcome, Quote):
        result.quotes.append(outcome)
    else:
        result.rejected[source] = outcome


def _declared_json(content_type: str) -> bool:
    # aiohttp reports a missing Content-Type as application/octet-stream; allow that too.
    return content_type in ("application/json", "text/json", "application/octet-stream") or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidQuote("body is not JSON") from None


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ExchangeFailure(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
