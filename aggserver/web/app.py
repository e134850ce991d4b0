"""The application factory: settings in, a ready-to-run aiohttp app out."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
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
from aggserver.engine.scheduler import OwnedWork, Scheduler
from aggserver.engine.universe import Universe
from aggserver.engine.usd import UsdPricer
from aggserver.exchanges.client import ExchangeClient
from aggserver.exchanges.ingest import Ingestor, stream_urls
from aggserver.exchanges.transport import create_session
from aggserver.history.dynamo import HistoryTable, ensure_table, lean_dynamo_client
from aggserver.history.outbox import Outbox, OutboxAppend, OutboxKeys
from aggserver.history.reads import HistoryQueries
from aggserver.history.rollups.blocks import ensure_rollup_table
from aggserver.history.writer_process import HistoryWriterView
from aggserver.metrics import MetricsCollector, RequestStats
from aggserver.process.data_plane import DataPlaneChild
from aggserver.process.tasks import stop_task
from aggserver.settings import Settings
from aggserver.store.connection import create_redis
from aggserver.store.lease import Lease
from aggserver.store.prices import PriceCache
from aggserver.store.updates import UpdateFeed
from aggserver.web import error_page
from aggserver.web.budget import ClientBudgets
from aggserver.web.keys import (
    BUDGETS,
    CACHE,
    DATA_PLANE,
    DYNAMO,
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
    UNIVERSE,
    UPDATE_FEED,
    USD_PRICER,
)
from aggserver.web.refresh_guard import RefreshGuard
from aggserver.web.routes.table import add_routes
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


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Prices in Redis: the pooled client, the batched reads and the write script (which appends
    the history records to the outbox in the same write)."""
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
    app[CACHE] = cache
    yield
    await cache.close()


async def price_view_ctx(app: web.Application) -> AsyncIterator[None]:
    """This process's view of every price, kept coherent by the announcements of every write."""
    settings = app[SETTINGS]
    cache = app[CACHE]
    view = PriceView(max_age=settings.near_cache_seconds, tiers=app[TIERS], load=cache.get_many)
    feed = UpdateFeed()
    feed.add_listener(view)
    feed.start(cache.client)
    app[PRICE_VIEW] = view
    app[UPDATE_FEED] = feed
    yield
    await feed.stop()
    await view.close()


async def dynamo_ctx(app: web.Application) -> AsyncIterator[None]:
    """DynamoDB for this process: the tables made where missing (start-up goes on without them:
    refreshes and reads do not need DynamoDB, and the writer retries), the latest record of an
    asset, bounded history reads, and whether the table answers."""
    settings = app[SETTINGS]
    async with lean_dynamo_client(settings) as client:
        try:
            async with asyncio.timeout(STARTUP_TABLE_SECONDS):
                await ensure_table(client, settings.prices_table)
                await ensure_rollup_table(client, settings.prices_table)
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            log.warning("DynamoDB table %s not ready at start-up: %s", settings.prices_table, exc)
        table = HistoryTable(client, settings.prices_table)
        app[DYNAMO] = client
        app[LATEST_RECORD] = table.latest
        app[HISTORY_READY] = table.answers
        app[HISTORY_QUERIES] = HistoryQueries(
            client,
            settings.prices_table,
            max_in_flight=settings.history_max_queries,
            records_per_second=settings.history_records_per_second,
        )
        yield


async def history_writer_ctx(app: web.Application) -> AsyncIterator[None]:
    """The history writer HISTORY_WRITER asks for (a child process by default); on shutdown,
    after the outbox has taken what waited here, it drains the outbox into DynamoDB."""
    settings = app[SETTINGS]
    writer = HistoryWriterView.start(settings, app[CACHE].client, app[DYNAMO])
    app[HISTORY_WRITER] = writer
    yield
    await writer.stop(settings.history_flush_seconds)


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """The outbox's side in this process: its figures, and the records kept in memory while
    Redis is away, appended once it is back (and at shutdown, before the writer drains)."""
    settings = app[SETTINGS]
    outbox = Outbox(
        app[CACHE].client,
        table=settings.prices_table,
        max_pending=settings.history_max_pending,
        timeout=settings.redis_timeout_seconds,
    )
    app[OUTBOX] = outbox
    task = asyncio.create_task(outbox.run(), name="history-outbox")
    yield
    await outbox.stop(task)
    await outbox.flush(settings.history_flush_seconds)


async def exchanges_ctx(app: web.Application) -> AsyncIterator[None]:
    """The exchanges, their listings loaded before the first refresh and reloaded from then on,
    and the universe made of them."""
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
    universe = Universe(settings, ours, exchanges, app[TIERS])
    await universe.load()
    reloads = asyncio.create_task(universe.keep(settings.listing_refresh_seconds), name="listing-reloads")
    app[EXCHANGES] = exchanges
    app[UNIVERSE] = universe
    yield
    await stop_task(reloads)


async def refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    """The refresh and read paths, which share the exchanges, the cache, the view and history."""
    settings = app[SETTINGS]
    exchanges = app[EXCHANGES]
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
    pricer = UsdPricer(
        symbols=app[SYMBOLS],
        exchanges=exchanges,
        view=app[PRICE_VIEW],
        cache=app[CACHE],
        rate_currencies=settings.rate_currencies,
        pegs=settings.quote_pegs,
        max_rate_age=settings.quote_max_age_seconds,
        min_interval=settings.aggregate_min_interval_seconds,
        enabled=settings.usd_prices,
    )
    refresher.price_in_usd(pricer)
    app[USD_PRICER] = pricer
    reader = PriceReader(
        cache=app[CACHE],
        refresher=refresher,
        tiers=app[TIERS],
        popularity=app[POPULARITY],
        latest_record=app[LATEST_RECORD],
        view=app[PRICE_VIEW],
    )
    app[REFRESHER] = refresher
    app[READER] = reader
    symbols = app[SYMBOLS]
    app[FRESHNESS] = FreshnessProbe(
        app[CACHE], symbols, listed=lambda s: exchanges.listed(s) or pricer.prices(s)
    )
    app[REFRESH_GUARD] = RefreshGuard(
        token=settings.refresh_token,
        min_interval=settings.refresh_min_interval_seconds,
        rate=settings.refresh_rate_limit,
    )
    yield
    await reader.close()


async def stream_hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """Live prices to clients (SSE and WebSocket), fed by the announcements."""
    settings = app[SETTINGS]
    hub = StreamHub(
        app[CACHE],
        view=app[PRICE_VIEW],
        max_connections=settings.stream_max_connections,
        max_assets=settings.stream_max_assets,
    )
    app[UPDATE_FEED].add_listener(hub)
    app[UNIVERSE].subscribe(lambda _added, removed: hub.delisted(removed, int(time.time())))
    app[STREAM_HUB] = hub
    yield
    await hub.close_all()


async def _end_streams(app: web.Application) -> None:
    # Live streams never finish by themselves: end them before the server waits for handlers.
    if STREAM_HUB in app:
        await app[STREAM_HUB].close_all()


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Automatic refresh by tier and venue streams, run by whichever processes hold the leases of
    the refresh shards; stopped first on shutdown, so history flushes what it queued."""
    settings = app[SETTINGS]
    symbols = app[SYMBOLS]
    scheduler = Scheduler(
        symbols=symbols,
        tiers=app[TIERS],
        popularity=app[POPULARITY],
        refresher=app[REFRESHER],
        cache=app[CACHE],
        latest_record=app[LATEST_RECORD],
        exchanges=app[EXCHANGES],
        bulk_round_seconds=settings.bulk_round_seconds,
    )
    ingestor = Ingestor(
        app[HTTP_SESSION],
        app[EXCHANGES],
        app[REFRESHER],
        stream_urls(settings),
        min_interval=settings.aggregate_min_interval_seconds,
        stall_seconds=settings.stream_stall_seconds,
    )
    work = OwnedWork(scheduler, ingestor, app[USD_PRICER], symbols, shards=settings.refresh_shards)
    app[UNIVERSE].subscribe(work.universe_changed)
    lease = Lease(
        app[CACHE].client,
        ttl_seconds=settings.lease_seconds,
        shards=settings.refresh_shards,
        on_change=work.follow,
    )
    app[SCHEDULER] = scheduler
    app[INGESTOR] = ingestor
    app[LEASE] = lease
    if settings.auto_refresh and settings.data_plane_mode == "inline":
        # The refresh work of all workers and instances sharing this Redis is done once, cut into
        # REFRESH_SHARDS shards shared out among them (``store/lease.py``).
        lease.start()
    yield
    await lease.stop()
    await work.follow(frozenset())


async def data_plane_ctx(app: web.Application) -> AsyncIterator[None]:
    """With DATA_PLANE=process, the refresh work in a child process (``aggserver ingest``), kept
    running; stopped first on shutdown, so its outbox is drained by this process's writer."""
    settings = app[SETTINGS]
    child = (
        DataPlaneChild(settings) if settings.auto_refresh and settings.data_plane_mode == "process" else None
    )
    app[DATA_PLANE] = child
    if child is not None:
        child.start()
    yield
    if child is not None:
        await child.stop()


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
    _hold_universe(app, settings)
    # One context per resource, in the order they depend on each other; torn down in reverse: the
    # data plane and the scheduler stop, streams end, the outbox takes what waits here, the writer
    # drains it, the pools close.
    app.cleanup_ctx.extend([*DATA_CONTEXTS[:-1], stream_hub_ctx, scheduler_ctx, data_plane_ctx])
    app.on_startup.append(_freeze_startup_objects)
    app.on_shutdown.append(_end_streams)
    add_routes(app)
    return app


# What the refresh work needs, in dependency order (the serving app adds the streams to clients
# and, with DATA_PLANE=process, the child that runs this work instead).
DATA_CONTEXTS = (
    http_session_ctx,
    redis_ctx,
    price_view_ctx,
    dynamo_ctx,
    history_writer_ctx,
    outbox_ctx,
    exchanges_ctx,
    refresher_ctx,
    scheduler_ctx,
)


def _hold_universe(app: web.Application, settings: Settings) -> None:
    symbols = load_symbols(settings.symbols_file)
    app[SYMBOLS] = symbols
    app[TIERS] = TierMap(symbols.ordered, settings)
    app[POPULARITY] = Popularity(
        promote_rate=settings.promote_gets_per_second, max_promoted=settings.promote_max
    )


def create_data_plane(settings: Settings) -> web.Application:
    """The refresh work alone, for ``aggserver ingest``: no routes, run by an AppRunner without a
    site (its cleanup contexts are the work)."""
    app = web.Application()
    app[SETTINGS] = settings
    app[REQUEST_STATS] = RequestStats(enabled=False)
    _hold_universe(app, settings)
    app.cleanup_ctx.extend(DATA_CONTEXTS)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    # Everything loaded so far (botocore's service models above all) lives as long as the
    # process; moving it out of the collector's reach keeps full collections short.
    gc.collect()
    gc.freeze()
