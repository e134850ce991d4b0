"""The venues' public WebSocket ticker streams: which venue has one, and where to connect.

Each stream's frames are its venue's (``BinanceStream`` in ``venues/binance.py``, ``OkxStream``
in ``okx.py``, ``BybitStream`` in ``bybit.py``, their base in ``stream_base.py``); the venues'
documents are cited beside each.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aggserver.errors import ConfigError
from aggserver.venues.binance import BinanceStream
from aggserver.venues.bybit import BybitStream
from aggserver.venues.okx import OkxStream
from aggserver.venues.stream_base import VenueStream

__all__ = ["STREAMS", "parse_stream_urls", "stream_url"]


STREAMS: dict[str, VenueStream] = {
    stream.venue: stream for stream in (BinanceStream(), OkxStream(), BybitStream())
}


def parse_stream_urls(raw: str) -> dict[str, str]:
    """``EXCHANGE_STREAMS``: comma-separated ``VENUE=WS_BASE_URL`` overrides."""
    urls: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        venue, _, url = (part.strip() for part in entry.partition("="))
        venue = venue.lower()
        if venue not in STREAMS:
            raise ConfigError(f"EXCHANGE_STREAMS: {venue!r} has no stream (streams: {', '.join(STREAMS)})")
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigError(f"EXCHANGE_STREAMS entry {entry!r}: {url!r} is not a ws(s) URL")
        urls[venue] = url.rstrip("/")
    return urls


def stream_url(venue: str, rest_base: str, public_rest_base: str, overrides: dict[str, str]) -> str | None:
    """Where ``venue``'s stream is: the override, else its public stream for its public REST
    API, else the REST host itself (a venue personality of mockex serves both); None when the
    venue has no stream."""
    if venue not in STREAMS:
        return None
    if venue in overrides:
        return overrides[venue]
    if rest_base.rstrip("/") == public_rest_base.rstrip("/"):
        return STREAMS[venue].default_url
    parts = urlsplit(rest_base)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"
