"""Reading query parameters; anything malformed raises InvalidParameter or InvalidSymbol (400)."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable

from aiohttp import web

from aggserver.domain.quality import QualityGuard
from aggserver.errors import InvalidParameter, InvalidSymbol
from aggserver.web.keys import SYMBOLS

__all__ = [
    "decode_cursor",
    "detail",
    "encode_cursor",
    "fraction",
    "known_asset",
    "listed_assets",
    "max_age",
    "number",
    "only",
    "quality",
    "whole_number",
]


def number(request: web.Request, name: str, *, most: float = math.inf, why: str) -> float | None:
    """The finite number ``name`` from 0 to ``most``, or None when absent; else 400 with ``why``."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 <= value <= most and value < math.inf):
        raise InvalidParameter(why)
    return value


def max_age(request: web.Request) -> float | None:
    return number(request, "max_age", why="max_age must be a number of seconds, 0 or more")


def detail(request: web.Request) -> bool:
    detail = request.query.get("detail")
    if detail not in (None, "sources"):
        raise InvalidParameter("detail must be 'sources'")
    return detail == "sources"


def whole_number(
    request: web.Request, name: str, default: int, meaning: str = "a time in unix seconds"
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise InvalidParameter(f"{name} must be {meaning}, a whole number")
    return int(raw)


def fraction(request: web.Request, name: str, default: float) -> float:
    """A number from 0 to 1."""
    value = number(request, name, most=1.0, why=f"{name} must be a number from 0 to 1")
    return default if value is None else value


# The quality guards a price read takes (``domain/quality.py``).
QUALITY = ("min_sources", "max_dispersion")
MAX_MIN_SOURCES = 100


def quality(request: web.Request) -> QualityGuard | None:
    """The guards asked for, or None."""
    query = request.query
    if "min_sources" not in query and "max_dispersion" not in query:
        return None
    min_sources = None
    if "min_sources" in query:
        min_sources = whole_number(request, "min_sources", 0, "a number of sources")
        if not 1 <= min_sources <= MAX_MIN_SOURCES:
            raise InvalidParameter(f"min_sources must be between 1 and {MAX_MIN_SOURCES}")
    why = "max_dispersion must be a number, 0 or more (0.01 is 1%)"
    max_dispersion = number(request, "max_dispersion", why=why)
    return QualityGuard(min_sources=min_sources, max_dispersion=max_dispersion)


def known_asset(request: web.Request) -> str:
    """The path's asset for a history read: priced now, or delisted (its history stays)."""
    asset = request.match_info["asset"].lower()
    if not request.app[SYMBOLS].readable(asset):
        raise InvalidSymbol(asset)
    return asset


def listed_assets(request: web.Request, *, limit: int) -> tuple[list[str], list[str]]:
    """The comma-separated ``assets`` (the parameter may repeat): known symbols (lowercase, each
    once, in order) and the names that are not symbols (as given). 400 for none or past ``limit``."""
    listed = [name.strip() for value in request.query.getall("assets", []) for name in value.split(",")]
    listed = [name for name in listed if name]
    if not listed:
        raise InvalidParameter("assets must list at least one symbol, comma-separated")
    if len(listed) > limit:
        raise InvalidParameter(f"assets lists {len(listed)} symbols; at most {limit} per request")
    symbols = request.app[SYMBOLS]
    known: dict[str, None] = {}
    invalid: list[str] = []
    for name in listed:
        if name.lower() in symbols:
            known[name.lower()] = None
        else:
            invalid.append(name)
    return list(known), invalid


def only(request: web.Request, allowed: Iterable[str]) -> None:
    """400 for a query parameter the route does not take: a typo must not pass silently."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise InvalidParameter(f"unknown query parameter {unknown[0]!r} (this route takes: {expected})")


def encode_cursor(asset: str, timestamp: int) -> str:
    """An opaque page cursor: the key after which the next page starts."""
    return base64.urlsafe_b64encode(f"{asset}:{timestamp}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, asset: str) -> int:
    """The timestamp a cursor of ``asset`` points after; ValueError when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this server gave out") from None
    named, _, timestamp = text.rpartition(":")
    if named != asset or not timestamp.isdigit():
        raise ValueError("cursor is not one this server gave out for this asset")
    return int(timestamp)
