"""What ``/metrics`` reports about a running app: each component's figures (its ``stats()``),
rendered as Prometheus families by one function per component; ``/status`` renders the same
figures as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client.core import Metric

from aggserver.domain.tiers import TierMap
from aggserver.engine.refresh import RefreshStats
from aggserver.engine.scheduler import SchedulerStats
from aggserver.exchanges.breaker import BreakerState
from aggserver.exchanges.registry import ExchangeStats
from aggserver.history.outbox import OutboxStats
from aggserver.metrics import RequestStats, counter, gauge, histogram
from aggserver.store.lease import LeaseStats
from aggserver.web.keys import (
    BUDGETS,
    EXCHANGES,
    HISTORY_QUERIES,
    LEASE,
    OUTBOX,
    PRICE_VIEW,
    READER,
    REFRESHER,
    REQUEST_STATS,
    SCHEDULER,
    STREAM_HUB,
    SYMBOLS,
    TIERS,
)
from aggserver.web.stream_hub import StreamStats

__all__ = ["app_families", "exchange_stats"]

_BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def exchange_stats(app: web.Application) -> list[ExchangeStats]:
    ours = len(app[SYMBOLS])
    return [exchange.stats(ours) for exchange in app[EXCHANGES].exchanges]


def app_families(app: web.Application) -> Iterator[Metric]:
    """Every family of this app, from its components' figures read now."""
    yield from request_families(app[REQUEST_STATS])
    yield from _read_families(app)
    yield from refresh_families(app[REFRESHER].stats())
    yield from exchange_families(exchange_stats(app))
    yield from _client_families(app)
    yield from stream_families(app[STREAM_HUB].stats(), subscribed=app[PRICE_VIEW].connected)
    yield from outbox_families(app[OUTBOX].stats())
    yield from schedule_families(app[TIERS], app[SCHEDULER].stats(), app[LEASE].stats())


def request_families(requests: RequestStats) -> Iterator[Metric]:
    yield counter(
        "aggserver_http_requests",
        "HTTP requests answered, by route and status.",
        ["route", "status"],
        {(route, str(status)): n for (route, status), n in requests.counts.items()},
    )
    yield histogram(
        "aggserver_http_request_duration_seconds", "Time to answer, by route.", "route", requests.latency
    )


def _read_families(app: web.Application) -> Iterator[Metric]:
    reader, near = app[READER], app[PRICE_VIEW]
    yield counter(
        "aggserver_cache_lookups",
        "GET /prices lookups by where they were answered from.",
        ["result"],
        {
            ("near_hit",): near.hits,
            ("redis_hit",): reader.hits,
            ("redis_miss",): reader.misses,
        },
    )
    yield gauge(
        "aggserver_near_cache_entries", "Prices held in this process's near-cache.", [], {(): len(near)}
    )


def refresh_families(refreshes: RefreshStats) -> Iterator[Metric]:
    yield counter(
        "aggserver_refreshes",
        "Asset refreshes by tier and outcome.",
        ["tier", "outcome"],
        {key: float(n) for key, n in refreshes.outcomes.items()},
    )
    yield counter(
        "aggserver_refreshes_joined",
        "Refresh calls that shared a refresh of the same asset already in flight.",
        [],
        {(): float(refreshes.joined)},
    )


def exchange_families(exchanges: Iterable[ExchangeStats]) -> Iterator[Metric]:
    figures = list(exchanges)
    yield counter(
        "aggserver_exchange_requests",
        "Requests sent to each exchange.",
        ["exchange"],
        {(e.name,): e.requests for e in figures},
    )
    yield counter(
        "aggserver_exchange_errors",
        "Failed requests (timeouts, transport, non-200) by exchange.",
        ["exchange"],
        {(e.name,): e.errors for e in figures},
    )
    yield histogram(
        "aggserver_exchange_request_duration_seconds",
        "Exchange request time.",
        "exchange",
        {e.name: e.latency for e in figures},
    )
    yield gauge(
        "aggserver_exchange_circuit_state",
        "Circuit breaker: 0 closed, 1 half-open, 2 open.",
        ["exchange"],
        {(e.name,): _BREAKER_VALUES[e.circuit] for e in figures},
    )
    yield counter(
        "aggserver_exchange_rate_limited",
        "Answers in which an exchange said we sent too many requests (429, 418, 403 or an envelope code).",
        ["exchange"],
        {(e.name,): e.rate_limited for e in figures},
    )
    yield counter(
        "aggserver_exchange_requests_held",
        "Requests not sent to an exchange: it asked us to wait, or its rate budget was spent.",
        ["exchange"],
        {(e.name,): e.held for e in figures},
    )
    yield gauge(
        "aggserver_exchange_blocked_seconds",
        "Seconds until requests to an exchange may go out again after it rate-limited us.",
        ["exchange"],
        {(e.name,): e.blocked_seconds for e in figures},
    )
    yield gauge(
        "aggserver_exchange_listed_symbols",
        "Symbols of ours each exchange lists (mockex-format exchanges list all of them).",
        ["exchange"],
        {(e.name,): e.listed for e in figures},
    )


def _client_families(app: web.Application) -> Iterator[Metric]:
    yield counter(
        "aggserver_client_budget_refusals",
        "Requests refused with 429 because their client had spent its budget, by route.",
        ["route"],
        {(route,): n for route, n in app[BUDGETS].refused.items()},
    )
    yield counter(
        "aggserver_history_queries_refused",
        "History and candle requests refused with 429, by reason: in_flight (HISTORY_MAX_QUERIES "
        "running) or records (HISTORY_RECORDS_PER_SECOND spent).",
        ["reason"],
        {(reason,): app[HISTORY_QUERIES].refused[reason] for reason in ("in_flight", "records")},
    )


def stream_families(streams: StreamStats, *, subscribed: bool) -> Iterator[Metric]:
    yield gauge(
        "aggserver_stream_connections",
        "Live streams (SSE and WebSocket) open now.",
        [],
        {(): streams.connections},
    )
    yield counter(
        "aggserver_stream_events",
        "Price events offered to stream subscribers.",
        [],
        {(): streams.delivered},
    )
    yield gauge(
        "aggserver_price_updates_subscribed",
        "1 while this process's subscription to price announcements in Redis is live (0: Redis "
        "unreachable from here, or reconnecting).",
        [],
        {(): int(subscribed)},
    )
    yield counter(
        "aggserver_ws_rate_closes",
        "WebSockets closed (1008) for sending control messages faster than WS_MESSAGES_PER_SECOND.",
        [],
        {(): streams.rate_closes},
    )


def outbox_families(outbox: OutboxStats) -> Iterator[Metric]:
    state = outbox.state
    yield gauge(
        "aggserver_history_queue_depth",
        "History records in the outbox (Redis), not yet in DynamoDB: every instance's.",
        [],
        {(): state.backlog},
    )
    yield gauge(
        "aggserver_history_memory_pending",
        "History records this process holds while Redis cannot be reached.",
        [],
        {(): outbox.in_memory},
    )
    yield gauge(
        "aggserver_history_oldest_seconds",
        "Age of the oldest record in the outbox (0 when it is empty).",
        [],
        {(): state.oldest_seconds or 0.0},
    )
    yield gauge(
        "aggserver_history_writers",
        "History writers that reported in the last 10 s.",
        [],
        {(): state.writers_alive},
    )
    yield counter(
        "aggserver_history_records",
        "History records by fate, across every writer (dropped: trimmed from the outbox, unreadable, "
        "or lost from memory while Redis was down).",
        ["result"],
        {
            ("written",): state.written,
            ("retried",): state.retried,
            ("reclaimed",): state.reclaimed,
            ("dropped",): outbox.dropped,
        },
    )
    yield gauge(
        "aggserver_history_rollups_due",
        "Candle rollup blocks past their due time that no history writer has claimed yet.",
        [],
        {(): state.rollups_due},
    )


def schedule_families(tiers: TierMap, scheduler: SchedulerStats, lease: LeaseStats) -> Iterator[Metric]:
    yield gauge(
        "aggserver_refresh_interval_seconds",
        "Each tier's configured refresh interval: a round should not take longer.",
        ["tier"],
        {(tier.name,): tier.interval for tier in tiers.by_name.values()},
    )
    yield gauge(
        "aggserver_refresh_round_seconds",
        "How long the last round of each tier took to hand out its slots ('catch_up': the "
        "start-up round of every missing asset, start to finish).",
        ["tier"],
        {
            **{(tier,): seconds for tier, seconds in scheduler.rounds.items()},
            **({("catch_up",): scheduler.catch_up_seconds} if scheduler.catch_up_seconds is not None else {}),
        },
    )
    yield gauge(
        "aggserver_refresh_lease_held",
        "1 when this process runs the scheduler.",
        [],
        {(): int(lease.held)},
    )
    yield gauge(
        "aggserver_refresh_shards_owned",
        "Refresh shards (REFRESH_SHARDS) this process owns.",
        [],
        {(): len(lease.owned)},
    )
