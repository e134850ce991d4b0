"""Venue adapters: one module per venue behind the interface in ``base``, and the parser of
the ``EXCHANGES`` setting that picks them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aggserver.errors import ConfigError
from aggserver.venues.base import Venue
from aggserver.venues.binance import Binance
from aggserver.venues.bybit import Bybit
from aggserver.venues.coinbase import Coinbase
from aggserver.venues.kraken import Kraken
from aggserver.venues.mockex import Mockex
from aggserver.venues.okx import Okx

__all__ = ["VENUES", "VenueConfig", "parse_exchanges", "venue_for"]

VENUES: dict[str, type[Venue]] = {v.name: v for v in (Binance, Okx, Bybit, Kraken, Coinbase)}


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueConfig:
    """One configured exchange: which adapter, where it is reached, and its display name."""

    venue: str
    base_url: str
    name: str


def _check_url(entry: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"EXCHANGES entry {entry!r}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


def parse_exchanges(raw: str) -> tuple[VenueConfig, ...]:
    """``EXCHANGES``: comma-separated ``VENUE`` or ``VENUE=BASE_URL`` entries (``mockex=TICKER_URL``)."""
    configs: list[VenueConfig] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        venue, _, url = (part.strip() for part in entry.partition("="))
        venue = venue.lower()
        if venue == "mockex":
            if not url:
                raise ConfigError(
                    "EXCHANGES entry 'mockex' needs its ticker URL: mockex=http://HOST:PORT/mock/ticker"
                )
            url = _check_url(entry, url)
            configs.append(VenueConfig(venue=venue, base_url=url, name=urlsplit(url).netloc))
        elif venue in VENUES:
            base = _check_url(entry, url) if url else VENUES[venue].base_url
            configs.append(VenueConfig(venue=venue, base_url=base, name=venue))
        else:
            known = ", ".join([*VENUES, "mockex"])
            raise ConfigError(f"EXCHANGES: unknown venue {venue!r} (known: {known})")
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"EXCHANGES names {', '.join(duplicates)} more than once")
    return tuple(configs)


def venue_for(config: VenueConfig) -> Venue:
    """The adapter for a configured exchange."""
    if config.venue == "mockex":
        return Mockex(config.base_url)
    return VENUES[config.venue]()
