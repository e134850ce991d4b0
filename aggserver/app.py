"""The application factory: settings in, a ready-to-run aiohttp app out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from aggserver import api
from aggserver.cache import PriceCache, create_redis
from aggserver.exchanges import ExchangeClient, create_session
from aggserver.history import HistoryWriter, ensure_table
from aggserver.keys import CACHE, HISTORY, HTTP_SESSION, REFRESHER, SETTINGS, SYMBOLS
from aggserver.refresh import Refresher
from aggserver.settings import Settings
from aggserver.symbols import load_symbols

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# How long shutdown waits for queued history to reach DynamoDB.
HISTORY_FLUSH_SECONDS = 20.0
EXCHANGE_CONNECTIONS = 100


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
    )
    cache = PriceCache(client, ttl_seconds=settings.cache_ttl_seconds, timeout=settings.redis_timeout_seconds)
    app[CACHE] = cache
    yield
    await cache.close()


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """The DynamoDB client and the writer task; on shutdown the queue is flushed first."""
    settings = app[SETTINGS]
    config = AioConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
    )
    async with get_session().create_client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint,
        config=config,
    ) as client:
        table_ready = False
        try:
            await ensure_table(client, settings.prices_table, timeout=10)
            table_ready = True
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            # Start anyway: refreshes and reads do not need DynamoDB, and the writer retries.
            log.warning("DynamoDB table %s not ready at start-up: %s", settings.prices_table, exc)
        writer = HistoryWriter(
            client,
            settings.prices_table,
            batch_size=settings.history_batch_size,
            max_pending=settings.history_max_pending,
            table_ready=table_ready,
        )
        app[HISTORY] = writer
        task = asyncio.create_task(writer.run(), name="history-writer")
        yield
        await writer.drain(task, timeout=HISTORY_FLUSH_SECONDS)
        log.info("history writer stopped: %d written, %d pending", writer.written, writer.pending)


async def refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    exchanges = ExchangeClient(
        app[HTTP_SESSION], settings.exchange_urls, timeout=settings.exchange_timeout_seconds
    )
    app[REFRESHER] = Refresher(exchanges=exchanges, cache=app[CACHE], history=app[HISTORY])
    yield


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the app; with no settings they are read from the environment (as ``adev`` needs)."""
    settings = settings or Settings.from_env()
    app = web.Application(middlewares=[api.error_middleware])
    app[SETTINGS] = settings
    app[SYMBOLS] = load_symbols(settings.symbols_file)
    # Torn down in reverse: the refresher stops before history flushes, before pools close.
    app.cleanup_ctx.extend([http_session_ctx, cache_ctx, history_ctx, refresher_ctx])
    app.router.add_routes(api.routes)
    return app
