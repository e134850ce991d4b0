"""Kraken spot: envelopes ``{"error": [...], "result": {...}}``; tickers carry no time.

Documentation (public, no API key):
- https://docs.kraken.com/api/docs/rest-api/get-tradable-asset-pairs
  (``GET /0/public/AssetPairs``: keyed by pair name, with ``altname``, ``wsname``, ``base``,
  ``quote``, ``status``)
- https://docs.kraken.com/api/docs/rest-api/get-ticker-information
  (``GET /0/public/Ticker?pair=A,B``: ``c`` = [last price, lot volume], ``v`` = [today, last
  24 h] base volume, all strings; keyed by the pair name; without ``pair``, every pair)
- https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits (public calls: about one a
  second per IP; ``EAPI:Rate limit exceeded`` / ``EGeneral:Too many requests`` past it)

Kraken names some assets in its own way: ``XBT`` is bitcoin, ``XDG`` dogecoin, and assets it
listed early carry a class prefix, ``X`` for crypto and ``Z`` for fiat (``XXBT``, ``ZUSD``).
``wsname`` (``XBT/USDT``) gives the short codes, which are then mapped to the common ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggserver.domain.reasons import QuoteRejected
from aggserver.venues.base import (
    Bulk,
    EnvelopeError,
    Instrument,
    RateLimited,
    RatePolicy,
    Ticker,
    Venue,
    VenueError,
    VenueRequest,
    number,
)

__all__ = ["LEGACY_CODES", "Kraken", "common_code"]

# Kraken's own codes for assets other venues name differently.
ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
# Four-letter codes with Kraken's class prefix: the prefix is dropped, then ALIASES apply.
LEGACY_CODES = frozenset(
    {
        "XXBT", "XETH", "XLTC", "XXRP", "XXLM", "XETC", "XZEC", "XXMR", "XMLN", "XREP", "XXDG",
        "XDAO", "XNMC", "XXVN", "XICN", "XFEE",
        "ZUSD", "ZEUR", "ZGBP", "ZJPY", "ZCAD", "ZAUD", "ZCHF", "ZKRW",
    }
)  # fmt: skip
RATE_LIMIT_ERRORS = ("EAPI:Rate limit exceeded", "EGeneral:Too many requests")


def common_code(code: str) -> str:
    """The common code for a Kraken asset code: ``XXBT`` and ``XBT`` -> ``BTC``, ``ZUSD`` -> ``USD``."""
    code = code.upper()
    if code in LEGACY_CODES:
        code = code[1:]
    return ALIASES.get(code, code)


def _result(payload: object) -> dict[str, object]:
    if not isinstance(payload, dict):
        raise VenueError("answer is not a Kraken envelope")
    errors = payload.get("error")
    if errors:
        messages = [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]
        reason = "; ".join(messages)
        if any(m.startswith(RATE_LIMIT_ERRORS) for m in messages):
            raise RateLimited(f"rate limited ({reason})")
        raise EnvelopeError(reason)
    result = payload.get("result")
    if not isinstance(result, dict):
        raise VenueError("envelope has no result")
    return result


class Kraken(Venue):
    name = "kraken"
    base_url = "https://api.kraken.com"
    # Ticker without ``pair`` answers every tradable pair: one request prices them all.
    bulk = Bulk.ALL
    rate = RatePolicy(capacity=1, window_seconds=1)

    def listing_request(self) -> VenueRequest:
        return VenueRequest(path="/0/public/AssetPairs")

    def parse_listing(self, payload: object) -> list[Instrument]:
        instruments = []
        for native, pair in _result(payload).items():
            if not isinstance(pair, dict) or pair.get("status", "online") != "online":
                continue
            wsname = pair.get("wsname")
            if isinstance(wsname, str) and wsname.count("/") == 1:
                base, quote = wsname.split("/")
            elif isinstance(pair.get("base"), str) and isinstance(pair.get("quote"), str):
                base, quote = str(pair["base"]), str(pair["quote"])
            else:
                continue
            instruments.append(Instrument(native=native, base=common_code(base), quote=common_code(quote)))
        return instruments

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        if natives is None:
            return VenueRequest(path="/0/public/Ticker")
        return VenueRequest(path="/0/public/Ticker", params={"pair": ",".join(natives)})

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path="/0/public/Ticker", params={"pair": native})

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        tickers: dict[str, Ticker | QuoteRejected] = {}
        for native, item in _result(payload).items():
            if not isinstance(item, dict):
                raise VenueError("result holds something that is not a ticker")
            try:
                last, volumes = item.get("c"), item.get("v")
                if not (isinstance(last, list) and last and isinstance(volumes, list) and len(volumes) > 1):
                    raise VenueError("c or v is not a list")
                tickers[native] = Ticker(
                    native=native,
                    price=number(last[0], "c[0]"),
                    volume=number(volumes[1], "v[1]"),
                    timestamp_ms=None,
                )
            except VenueError as exc:
                tickers[native] = exc.rejection
        return tickers

    def error_message(self, payload: object) -> str | None:
        if isinstance(payload, dict) and payload.get("error"):
            return "; ".join(map(str, payload["error"])) if isinstance(payload["error"], list) else None
        return None
