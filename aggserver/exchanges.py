"""Exchange clients: one pooled keep-alive session, concurrent fetches, failures as reasons."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson

from aggserver.aggregate import InvalidQuote, Quote, parse_quote

__all__ = ["MAX_BODY_BYTES", "ExchangeClient", "FetchResult", "create_session", "source_name"]

# A ticker is ~100 bytes; anything far larger is not a ticker and is not read to the end.
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """Every exchange's answer for one asset: the usable quotes and why the others were not."""

    quotes: list[Quote]
    rejected: dict[str, str]


def source_name(url: str) -> str:
    """A short, stable name for an exchange: its host and port."""
    return urlsplit(url).netloc or url


def create_session(*, connections: int, timeout: float) -> aiohttp.ClientSession:
    """The shared client session; keep-alive connections are reused across refreshes."""
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        raise_for_status=False,
    )


class ExchangeClient:
    """Fetches one asset from every configured exchange at once."""

    def __init__(self, session: aiohttp.ClientSession, urls: tuple[str, ...], *, timeout: float) -> None:
        self._session = session
        self._sources = tuple((source_name(url), url) for url in urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._sources)

    async def fetch(self, symbol: str) -> FetchResult:
        """All exchanges' quotes for ``symbol``; never raises for an exchange's failure."""
        outcomes = await asyncio.gather(*(self._fetch_one(name, url, symbol) for name, url in self._sources))
        quotes: list[Quote] = []
        rejected: dict[str, str] = {}
        for (name, _), outcome in zip(self._sources, outcomes, strict=True):
            if isinstance(outcome, Quote):
                quotes.append(outcome)
            else:
                rejected[name] = outcome
        return FetchResult(quotes=quotes, rejected=rejected)

    async def _fetch_one(self, name: str, url: str, symbol: str) -> Quote | str:
        try:
            async with self._session.get(f"{url}/{symbol}", timeout=self._timeout) as response:
                if response.status != 200:
                    return f"HTTP {response.status}"
                body = await _read_limited(response)
            return parse_quote(orjson.loads(body), source=name, symbol=symbol)
        except TimeoutError:
            return "timed out"
        except aiohttp.ClientError as exc:
            return f"request failed: {type(exc).__name__}"
        except orjson.JSONDecodeError:
            return "body is not JSON"
        except InvalidQuote as exc:
            return f"invalid quote: {exc}"


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidQuote(f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
