"""The history writer as a process of its own: ``aggserver history-writer``, and the child that
the server starts by default (HISTORY_WRITER=process) so no DynamoDB write runs on its loop."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from aggserver.history.dynamo import describe_error, ensure_table, lean_dynamo_client
from aggserver.history.writer import HistoryWriter
from aggserver.process.children import SupervisedChild, stop_on_signals
from aggserver.settings import Settings
from aggserver.store.connection import RedisClient, create_redis

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "HistoryWriterView",
    "WriterChild",
    "configured_writer",
    "run_writer",
    "serve_writer",
    "writer_env",
]

log = logging.getLogger(__name__)

READY_LINE = "history writer ready"


def configured_writer(
    settings: Settings, redis: RedisClient, dynamo: DynamoDBClient, *, table_ready: bool
) -> HistoryWriter:
    """A writer as the settings describe it, in a process of its own or inline in the server."""
    return HistoryWriter(
        redis,
        dynamo,
        settings.prices_table,
        batch_size=settings.history_batch_size,
        claim_idle_seconds=settings.history_claim_idle_seconds,
        # A blocking read holds its connection: shorter than the client's socket timeout.
        block_ms=max(1, int(min(1.0, settings.redis_timeout_seconds / 2) * 1000)),
        table_ready=table_ready,
    )


async def run_writer(settings: Settings, stop: asyncio.Event) -> HistoryWriter:
    """Write the outbox into DynamoDB until ``stop`` is set, then drain within HISTORY_FLUSH_SECONDS."""
    redis = create_redis(
        settings.redis_url,
        max_connections=8,
        timeout=settings.redis_timeout_seconds,
        cluster=settings.redis_cluster,
    )
    try:
        async with lean_dynamo_client(settings) as dynamo:
            table_ready = False
            try:
                async with asyncio.timeout(10):
                    await ensure_table(dynamo, settings.prices_table)
                table_ready = True
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                log.warning(
                    "DynamoDB table %s not ready yet (%s); will retry",
                    settings.prices_table,
                    describe_error(exc),
                )
            writer = configured_writer(settings, redis, dynamo, table_ready=table_ready)
            task = asyncio.create_task(writer.run(), name="history-writer")
            log.info("history writer %s started (table %s)", writer.consumer, settings.prices_table)
            await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            await writer.drain(task, timeout=settings.history_flush_seconds)
            log.info(
                "history writer %s stopped: %d written, %d retried, %d taken over",
                writer.consumer,
                writer.written,
                writer.retried,
                writer.reclaimed,
            )
            return writer
    finally:
        await redis.aclose()


async def serve_writer(settings: Settings, *, stopped_early: Sequence[int] = ()) -> None:
    """The ``history-writer`` command: run until SIGTERM or SIGINT (or at once, draining what is
    there, when ``stopped_early`` holds a signal that came while the command was starting)."""
    await run_writer(settings, stop_on_signals(READY_LINE, stopped_early))


# What a writer needs to know, from the server's settings (which tests may have replaced).
def writer_env(settings: Settings) -> dict[str, str]:
    # This process's environment first: settings may have been read from a mapping of their own
    # that lacks PATH, HOME or the AWS credentials.
    env = {**os.environ, **settings.environ}
    env.update(
        REDIS_URL=settings.redis_url,
        REDIS_CLUSTER=str(settings.redis_cluster).lower(),
        REDIS_TIMEOUT_SECONDS=str(settings.redis_timeout_seconds),
        PRICES_TABLE=settings.prices_table,
        AWS_REGION=settings.aws_region,
        HISTORY_BATCH_SIZE=str(settings.history_batch_size),
        HISTORY_CLAIM_IDLE_SECONDS=str(settings.history_claim_idle_seconds),
        HISTORY_FLUSH_SECONDS=str(settings.history_flush_seconds),
        LOG_LEVEL=settings.log_level,
        LOG_FORMAT=settings.log_format,
    )
    if settings.dynamodb_endpoint:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = settings.dynamodb_endpoint
    return env


class WriterChild(SupervisedChild):
    """One ``aggserver history-writer`` child, started again whenever it exits unasked; stopping
    it waits while it drains (HISTORY_FLUSH_SECONDS, and a moment more)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "history writer",
            ["history-writer"],
            writer_env(settings),
            stop_seconds=settings.history_flush_seconds + 10,
        )


@dataclass(frozen=True, slots=True)
class HistoryWriterView:
    """Which writer this process runs, if any: an inline task's writer or a child process."""

    writer: HistoryWriter | None
    child: WriterChild | None
    task: asyncio.Task[None] | None = None

    @property
    def mode(self) -> str:
        return "inline" if self.writer is not None else "process" if self.child is not None else "external"

    @classmethod
    def start(cls, settings: Settings, redis: RedisClient, dynamo: DynamoDBClient) -> HistoryWriterView:
        """The writer HISTORY_WRITER asks for, started: a task here (``inline``), a child process
        (``process``), or none (``external``: writers run elsewhere)."""
        if settings.history_writer == "inline":
            writer = configured_writer(settings, redis, dynamo, table_ready=False)
            return cls(
                writer=writer, child=None, task=asyncio.create_task(writer.run(), name="history-writer")
            )
        if settings.history_writer == "process":
            child = WriterChild(settings)
            child.start()
            return cls(writer=None, child=child)
        return cls(writer=None, child=None)

    async def stop(self, flush_seconds: float) -> None:
        """Drain what the outbox holds (within ``flush_seconds``) and stop."""
        if self.writer is not None and self.task is not None:
            await self.writer.drain(self.task, timeout=flush_seconds)
        if self.child is not None:
            await self.child.stop()
