"""Every piece of shared application state, as a typed ``web.AppKey``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from aggserver.domain.symbols import SymbolSet
from aggserver.domain.tiers import Popularity, TierMap
from aggserver.engine.freshness import FreshnessProbe
from aggserver.engine.price_view import PriceView
from aggserver.engine.reader import PriceReader
from aggserver.engine.refresh import Refresher
from aggserver.engine.scheduler import Scheduler
from aggserver.exchanges.client import ExchangeClient
from aggserver.exchanges.ingest import Ingestor
from aggserver.history.dynamo import LatestRecord
from aggserver.history.outbox import Outbox
from aggserver.history.reads import HistoryQueries
from aggserver.history.writer_process import HistoryWriterView
from aggserver.metrics import RequestStats
from aggserver.settings import Settings
from aggserver.store.lease import Lease
from aggserver.store.prices import PriceCache
from aggserver.store.updates import UpdateFeed
from aggserver.web.budget import ClientBudgets
from aggserver.web.refresh_guard import RefreshGuard
from aggserver.web.stream_hub import StreamHub

__all__ = [
    "BUDGETS",
    "CACHE",
    "EXCHANGES",
    "FRESHNESS",
    "HISTORY_QUERIES",
    "HISTORY_READY",
    "HISTORY_WRITER",
    "HTTP_SESSION",
    "INGESTOR",
    "LATEST_RECORD",
    "LEASE",
    "METRICS_REGISTRY",
    "OUTBOX",
    "POPULARITY",
    "PRICE_VIEW",
    "READER",
    "REFRESHER",
    "REFRESH_GUARD",
    "REQUEST_STATS",
    "SCHEDULER",
    "SETTINGS",
    "STREAM_HUB",
    "SYMBOLS",
    "TIERS",
    "UPDATE_FEED",
]

SETTINGS = web.AppKey("settings", Settings)
SYMBOLS = web.AppKey("symbols", SymbolSet)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
CACHE = web.AppKey("cache", PriceCache)
OUTBOX = web.AppKey("outbox", Outbox)
HISTORY_WRITER = web.AppKey("history_writer", HistoryWriterView)
REFRESHER = web.AppKey("refresher", Refresher)
TIERS = web.AppKey("tiers", TierMap)
POPULARITY = web.AppKey("popularity", Popularity)
READER = web.AppKey("reader", PriceReader)
SCHEDULER = web.AppKey("scheduler", Scheduler)
INGESTOR = web.AppKey("ingestor", Ingestor)
EXCHANGES = web.AppKey("exchanges", ExchangeClient)
FRESHNESS = web.AppKey("freshness", FreshnessProbe)
LATEST_RECORD: web.AppKey[LatestRecord] = web.AppKey("latest_record")
LEASE = web.AppKey("lease", Lease)
PRICE_VIEW = web.AppKey("price_view", PriceView)
REFRESH_GUARD = web.AppKey("refresh_guard", RefreshGuard)
UPDATE_FEED = web.AppKey("update_feed", UpdateFeed)
STREAM_HUB = web.AppKey("stream_hub", StreamHub)
REQUEST_STATS = web.AppKey("request_stats", RequestStats)
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
# Whether the DynamoDB table answers now (for /ready).
HISTORY_QUERIES = web.AppKey("history_queries", HistoryQueries)
HISTORY_READY: web.AppKey[Callable[[], Awaitable[bool]]] = web.AppKey("history_ready")
BUDGETS = web.AppKey("budgets", ClientBudgets)
