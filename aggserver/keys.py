"""Every piece of shared application state, as a typed ``web.AppKey``."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from aggserver.cache import PriceCache
from aggserver.history import HistoryWriter
from aggserver.refresh import Refresher
from aggserver.settings import Settings
from aggserver.symbols import SymbolSet

__all__ = ["CACHE", "HISTORY", "HTTP_SESSION", "REFRESHER", "SETTINGS", "SYMBOLS"]

SETTINGS = web.AppKey("settings", Settings)
SYMBOLS = web.AppKey("symbols", SymbolSet)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
CACHE = web.AppKey("cache", PriceCache)
HISTORY = web.AppKey("history", HistoryWriter)
REFRESHER = web.AppKey("refresher", Refresher)
