"""The application factory: settings in, a ready-to-run aiohttp app out."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from aggserver.domain.aggregate import QuotePolicy
from aggserver.domain.symbols import load_symbols
from aggserver.domain.tiers import HistoryGate, Popularity, TierMap
from aggserver.engine.freshness import FreshnessProbe
from aggserver.engine.price_view import PriceView
from aggserver.engine.reader import PriceReader
from aggserver.engine.refresh import Refresher
from aggserver.engine.scheduler import Scheduler
from aggserver.exchanges.client import ExchangeClient
from aggserver.exchanges.ingest import Ingestor, stream_urls
from aggserver.exchanges.transport import create_session
from aggserver.history.dynamo import ensure_table, latest_record, lean_dynamo_client
from aggserver.history.outbox import Outbox, OutboxAppend, OutboxKeys
from aggserver.history.reads import HistoryQueries
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import ensure_rollup_table
from aggserver.history.writer import HistoryWriter
from aggserver.history.writer_process import HistoryWriterView, WriterChild, configured_writer
from aggserver.metrics import MetricsCollector, RequestStats
from aggserver.process.tasks import stop_task
from aggserver.settings import Settings
from aggserver.store.connection import create_redis
from aggserver.store.lease import Lease, shard_of
from aggserver.store.prices import PriceCache
from aggserver.store.updates import UpdateFeed
from aggserver.web import error_page
from aggserver.web.budget import ClientBudgets
from aggserver.web.keys import (
    BUDGETS,
    CACHE,
    EXCHANGES,
    FRESHNESS,
    HISTORY_QUERIES,
    HISTORY_READY,
    HISTORY_WRITER,
    HTTP_SESSION,
    INGESTOR,
    LATEST_RECORD,
    LEASE,
    METRICS_REGISTRY,
    OUTBOX,
    POPULARITY,
    PRICE_VIEW,
    READER,
    REFRESH_GUARD,
    REFRESHER,
    REQUEST_STATS,
    SCHEDULER,
    SETTINGS,
    STREAM_HUB,
    SYMBOLS,
    TIERS,
    UPDATE_FEED,
)
from aggserver.web.refresh_guard import RefreshGuard
from aggserver.web.routes import api
from aggserver.web.stream_hub import StreamHub
from aggserver.web.telemetry import app_families

__all__ = ["create_app"]

log = logging.getLogger(__name__)

EXCHANGE_CONNECTIONS = 100
# How long start-up waits for the DynamoDB table; past it the server starts anyway.
STARTUP_TABLE_SECONDS = 10.0


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with create_session(
        connections=EXCHANGE_CONNECTIONS, timeout=settings.exchange_timeout_seconds
    ) as session:
        app[HTTP_SESSION] = session
        yield


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = create_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        cluster=settings.redis_cluster,
    )
    outbox = OutboxAppend(
        OutboxKeys(settings.prices_table, cluster=settings.redis_cluster),
        max_records=settings.history_outbox_max_records,
    )
    cache = PriceCache(client, timeout=settings.redis_timeout_seconds, outbox=outbox)
    view = PriceView(max_age=settings.near_cache_seconds, tiers=app[TIERS], load=cache.get_many)
    feed = UpdateFeed()
    feed.add_listener(view)
    feed.start(client)
    app[CACHE] = cache
    app[PRICE_VIEW] = view
    app[UPDATE_FEED] = feed
    yield
    await feed.stop()
    await view.close()
    await cache.close()


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """History: the outbox's side in this process, the writer (a child process by default), and
    the DynamoDB client for reading history back. On shutdown what waits here goes to the outbox
    and the writer drains it."""
    settings = app[SETTINGS]
    async with lean_dynamo_client(settings) as client:
        table_ready = False
        try:
            async with asyncio.timeout(STARTUP_TABLE_SECONDS):
                await ensure_table(client, settings.prices_table)
                await ensure_rollup_table(client, settings.prices_table)
            table_ready = True
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            # Start anyway: refreshes and reads do not need DynamoDB, and the writer retries.
            log.warning("DynamoDB table %s not ready at start-up: %s", settings.prices_table, exc)
        outbox = Outbox(
            app[CACHE].client,
            table=settings.prices_table,
            max_pending=settings.history_max_pending,
            timeout=settings.redis_timeout_seconds,
        )
        app[OUTBOX] = outbox

        async def latest(asset: str) -> HistoryRecord | None:
            return await latest_record(client, settings.prices_table, asset)

        async def table_answers() -> bool:
            try:
                async with asyncio.timeout(2):
                    await client.describe_table(TableName=settings.prices_table)
            except (BotoCoreError, ClientError, TimeoutError):
                return False
            return True

        app[LATEST_RECORD] = latest
        app[HISTORY_QUERIES] = HistoryQueries(
            client,
            settings.prices_table,
            max_in_flight=settings.history_max_queries,
            records_per_second=settings.history_records_per_second,
        )
        app[HISTORY_READY] = table_answers
        outbox_task = asyncio.create_task(outbox.run(), name="history-outbox")
        writer: HistoryWriter | None = None
        child: WriterChild | None = None
        if settings.history_writer == "inline":
            writer = configured_writer(settings, app[CACHE].client, client, table_ready=table_ready)
            writer_task = asyncio.create_task(writer.run(), name="history-writer")
        elif settings.history_writer == "process":
            child = WriterChild(settings)
            child.start()
        app[HISTORY_WRITER] = HistoryWriterView(writer=writer, child=child)
        yield
        await outbox.stop(outbox_task)
        await outbox.flush(settings.history_flush_seconds)
        if writer is not None:
            await writer.drain(writer_task, timeout=settings.history_flush_seconds)
        if child is not None:
            await child.stop()


async def refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    """The refresh and read paths, which share the exchanges, the cache and the history."""
    settings = app[SETTINGS]
    ours = app[SYMBOLS]
    exchanges = ExchangeClient(
        app[HTTP_SESSION],
        settings.exchanges,
        symbols=ours,
        rate_shares=settings.rate_shares,
        timeout=settings.exchange_timeout_seconds,
        budget=settings.refresh_budget_seconds,
        bulk=settings.exchange_bulk,
        concurrency=settings.exchange_concurrency,
        breaker_failures=settings.breaker_failures,
        breaker_reset=settings.breaker_reset_seconds,
    )
    refresher = Refresher(
        exchanges=exchanges,
        cache=app[CACHE],
        outbox=app[OUTBOX],
        tiers=app[TIERS],
        policy=QuotePolicy(
            outlier_threshold=settings.outlier_threshold, max_age_seconds=settings.quote_max_age_seconds
        ),
        gate=HistoryGate(
            deviation=settings.history_deviation, heartbeat_seconds=settings.history_heartbeat_seconds
        ),
        view=app[PRICE_VIEW],
        ema_half_life=settings.ema_half_life_seconds,
    )
    reader = PriceReader(
        cache=app[CACHE],
        refresher=refresher,
        tiers=app[TIERS],
        popularity=app[POPULARITY],
        latest_record=app[LATEST_RECORD],
        view=app[PRICE_VIEW],
    )
    hub = StreamHub(
        app[CACHE],
        view=app[PRICE_VIEW],
        max_connections=settings.stream_max_connections,
        max_assets=settings.stream_max_assets,
    )
    app[UPDATE_FEED].add_listener(hub)
    # Which venue lists which symbol must be known before the first refresh round.
    await exchanges.load_listings()
    listings = asyncio.create_task(
        _reload_listings(exchanges, settings.listing_refresh_seconds), name="listing-reloads"
    )
    app[EXCHANGES] = exchanges
    app[REFRESHER] = refresher
    app[READER] = reader
    app[STREAM_HUB] = hub
    app[FRESHNESS] = FreshnessProbe(app[CACHE], app[SYMBOLS].ordered, listed=exchanges.listed)
    app[REFRESH_GUARD] = RefreshGuard(
        token=settings.refresh_token,
        min_interval=settings.refresh_min_interval_seconds,
        rate=settings.refresh_rate_limit,
    )
    yield
    await stop_task(listings)
    await hub.close_all()
    await reader.close()


# While a venue has never loaded its listing, it is tried again this often.
LISTING_RETRY_SECONDS = 30.0


async def _reload_listings(exchanges: ExchangeClient, interval: float) -> None:
    """Venues add and remove markets: load their listings again every ``interval``."""
    while True:
        await asyncio.sleep(
            min(interval, LISTING_RETRY_SECONDS) if exchanges.missing_listings() else interval
        )
        await exchanges.load_listings()


async def _end_streams(app: web.Application) -> None:
    # Live streams never finish by themselves: end them before the server waits for handlers.
    if STREAM_HUB in app:
        await app[STREAM_HUB].close_all()


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Automatic refresh by tier and venue streams, run by whichever processes hold the leases of
    the refresh shards; stopped first on shutdown, so history flushes what it queued."""
    settings = app[SETTINGS]
    scheduler = Scheduler(
        symbols=app[SYMBOLS].ordered,
        tiers=app[TIERS],
        popularity=app[POPULARITY],
        refresher=app[REFRESHER],
        cache=app[CACHE],
        latest_record=app[LATEST_RECORD],
        exchanges=app[EXCHANGES],
        bulk_round_seconds=settings.bulk_round_seconds,
    )
    app[SCHEDULER] = scheduler
    ingestor = Ingestor(
        app[HTTP_SESSION],
        app[EXCHANGES],
        app[REFRESHER],
        stream_urls(settings),
        min_interval=settings.aggregate_min_interval_seconds,
        stall_seconds=settings.stream_stall_seconds,
    )
    app[INGESTOR] = ingestor

    symbols = app[SYMBOLS].ordered

    async def owned(shards: frozenset[int]) -> None:
        await ingestor.stop()
        await scheduler.stop()
        if shards:
            assets = None
            if settings.refresh_shards > 1:
                assets = [a for a in symbols if shard_of(a, settings.refresh_shards) in shards]
            ingestor.start(assets)
            scheduler.start(assets)

    lease = Lease(
        app[CACHE].client, ttl_seconds=settings.lease_seconds, shards=settings.refresh_shards, on_change=owned
    )
    app[LEASE] = lease
    if settings.auto_refresh:
        # The refresh work of all workers and instances sharing this Redis is done once, cut into
        # REFRESH_SHARDS shards shared out among them (``store/lease.py``).
        lease.start()
    yield
    await lease.stop()
    await owned(frozenset())


MAX_REQUEST_LINE = 16_384
MAX_BODY = 64 * 1024


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the app; with no settings they are read from the environment (as ``adev`` needs)."""
    settings = settings or Settings.from_env()
    error_page.install()
    app = web.Application(
        # No route reads a body beyond a few bytes.
        client_max_size=MAX_BODY,
        handler_args={
            # A batch read of 1,000 symbols needs a longer line than aiohttp's 8 KiB default.
            "max_line_size": MAX_REQUEST_LINE,
            # Also bounds a client trickling its request headers (slowloris).
            "keepalive_timeout": settings.keepalive_seconds,
        },
    )
    app[SETTINGS] = settings
    app[REQUEST_STATS] = RequestStats(enabled=settings.request_metrics)
    app[BUDGETS] = ClientBudgets(
        rate=settings.client_budget_per_second,
        burst=settings.client_budget_burst,
        exempt=settings.client_budget_exempt,
        trusted_proxies=settings.trusted_proxies,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector([lambda: app_families(app)]))
    # What operators expect of any Python service: process_* (CPU, memory, file descriptors),
    # python_gc_* and python_info. Read at scrape time only.
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    app[METRICS_REGISTRY] = registry
    symbols = load_symbols(settings.symbols_file)
    app[SYMBOLS] = symbols
    app[TIERS] = TierMap(symbols.ordered, settings)
    app[POPULARITY] = Popularity(
        promote_rate=settings.promote_gets_per_second, max_promoted=settings.promote_max
    )
    # Torn down in reverse: the scheduler stops, then refreshes, then history flushes, then pools close.
    app.cleanup_ctx.extend([http_session_ctx, cache_ctx, history_ctx, refresher_ctx, scheduler_ctx])
    app.on_startup.append(_freeze_startup_objects)
    app.on_shutdown.append(_end_streams)
    api.add_routes(app)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    # Everything loaded so far (botocore's service models above all) lives as long as the
    # process; moving it out of the collector's reach keeps full collections short.
    gc.collect()
    gc.freeze()
