"""Every piece of shared application state, as a typed ``web.AppKey``.

The types are for the type checker only: importing the keys (as every HTTP helper does) must
not import the components themselves, so a parameter parser does not pull in botocore, the
history writer or the scheduler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client import CollectorRegistry
    from types_aiobotocore_dynamodb import DynamoDBClient

    from aggserver.domain.symbols import SymbolSet
    from aggserver.domain.tiers import Popularity, TierMap
    from aggserver.engine.freshness import FreshnessProbe
    from aggserver.engine.price_view import PriceView
    from aggserver.engine.reader import PriceReader
    from aggserver.engine.refresh import Refresher
    from aggserver.engine.scheduler import Scheduler
    from aggserver.engine.universe import Universe
    from aggserver.engine.usd import UsdPricer
    from aggserver.exchanges.client import ExchangeClient
    from aggserver.exchanges.ingest import Ingestor
    from aggserver.history.dynamo import LatestRecord
    from aggserver.history.outbox import Outbox
    from aggserver.history.reads import HistoryQueries
    from aggserver.history.writer_process import HistoryWriterView
    from aggserver.metrics import RequestStats
    from aggserver.process.data_plane import DataPlaneChild
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
    "DATA_PLANE",
    "DYNAMO",
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
    "UNIVERSE",
    "UPDATE_FEED",
    "USD_PRICER",
]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SYMBOLS: web.AppKey[SymbolSet] = web.AppKey("symbols")
# The data plane's child process (DATA_PLANE=process), or None where this process runs the work
# itself or data planes run elsewhere.
DATA_PLANE: web.AppKey[DataPlaneChild | None] = web.AppKey("data_plane")
UNIVERSE: web.AppKey[Universe] = web.AppKey("universe")
USD_PRICER: web.AppKey[UsdPricer] = web.AppKey("usd_pricer")
HTTP_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("http_session")
CACHE: web.AppKey[PriceCache] = web.AppKey("cache")
DYNAMO: web.AppKey[DynamoDBClient] = web.AppKey("dynamo")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
HISTORY_WRITER: web.AppKey[HistoryWriterView] = web.AppKey("history_writer")
REFRESHER: web.AppKey[Refresher] = web.AppKey("refresher")
TIERS: web.AppKey[TierMap] = web.AppKey("tiers")
POPULARITY: web.AppKey[Popularity] = web.AppKey("popularity")
READER: web.AppKey[PriceReader] = web.AppKey("reader")
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor")
EXCHANGES: web.AppKey[ExchangeClient] = web.AppKey("exchanges")
FRESHNESS: web.AppKey[FreshnessProbe] = web.AppKey("freshness")
LATEST_RECORD: web.AppKey[LatestRecord] = web.AppKey("latest_record")
LEASE: web.AppKey[Lease] = web.AppKey("lease")
PRICE_VIEW: web.AppKey[PriceView] = web.AppKey("price_view")
REFRESH_GUARD: web.AppKey[RefreshGuard] = web.AppKey("refresh_guard")
UPDATE_FEED: web.AppKey[UpdateFeed] = web.AppKey("update_feed")
STREAM_HUB: web.AppKey[StreamHub] = web.AppKey("stream_hub")
REQUEST_STATS: web.AppKey[RequestStats] = web.AppKey("request_stats")
METRICS_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry")
HISTORY_QUERIES: web.AppKey[HistoryQueries] = web.AppKey("history_queries")
# Whether the DynamoDB table answers now (for /ready).
HISTORY_READY: web.AppKey[Callable[[], Awaitable[bool]]] = web.AppKey("history_ready")
BUDGETS: web.AppKey[ClientBudgets] = web.AppKey("budgets")
