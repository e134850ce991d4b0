"""Typed settings, read from the environment in exactly one place."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aggserver.errors import ConfigError
from aggserver.venues import VENUES, VenueConfig, parse_exchanges
from aggserver.venues.streams import STREAMS, parse_stream_urls

__all__ = ["ACCEPT_BACKLOG", "DEFAULT_EXCHANGE_URLS", "DEFAULT_SYMBOLS_FILE", "Settings", "redact_url"]

DEFAULT_SYMBOLS_FILE = Path(__file__).resolve().parent / "symbols.csv"
DEFAULT_EXCHANGE_URLS = (
    "http://127.0.0.1:8081/mock/ticker",
    "http://127.0.0.1:8082/mock/ticker",
    "http://127.0.0.1:8083/mock/ticker",
)


def _streaming(env: Mapping[str, str]) -> bool:
    """Whether these settings stream quotes: INGEST=stream and a configured venue with a stream."""
    if env.get("INGEST", "stream").strip().lower() != "stream" or not env.get("EXCHANGES", "").strip():
        return False
    return any(config.venue in STREAMS for config in parse_exchanges(env["EXCHANGES"]))


def _mockex_exchanges(urls: tuple[str, ...]) -> tuple[VenueConfig, ...]:
    """EXCHANGE_URLS as EXCHANGES entries: each a mockex-format exchange."""
    return parse_exchanges(",".join(f"mockex={url}" for url in urls))


HISTORY_WRITERS = ("process", "inline", "external")
INGEST_MODES = ("stream", "poll")
# The deviation gate's default while venues stream: an aggregate a second per asset would be
# 864 million records a day; 0.5 % or the hourly heartbeat records ~2.1 million
# (python -m bench.history_cost --stream; README, "Push ingestion").
STREAMING_HISTORY_DEVIATION = 0.005

# The listening socket's accept queue. Deep, so a thousand clients connecting at once are not
# refused (with the usual 128, SYNs are dropped and clients wait a second or more to connect).
ACCEPT_BACKLOG = 4096


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything aggserver can be told; build with :meth:`from_env`."""

    host: str = "0.0.0.0"
    port: int = 8080
    redis_url: str = "redis://127.0.0.1:6379/0"
    # REDIS_URL names any one node of a Redis Cluster (ElastiCache cluster mode) instead.
    redis_cluster: bool = False
    redis_max_connections: int = 32
    redis_timeout_seconds: float = 1.0
    # How long a process may answer from its own copy of a price; updates published through
    # Redis drop copies sooner. 0 reads Redis on every GET.
    near_cache_seconds: float = 5.0
    exchange_urls: tuple[str, ...] = DEFAULT_EXCHANGE_URLS
    # EXCHANGES (venue adapters) when set; otherwise one mockex-format exchange per EXCHANGE_URLS.
    exchanges: tuple[VenueConfig, ...] = _mockex_exchanges(DEFAULT_EXCHANGE_URLS)
    # Share of each venue's published rate budget this process may use ({VENUE}_RATE_SHARE).
    rate_shares: Mapping[str, float] = field(default_factory=dict)
    # Assets that only bulk venues list are all refreshed this often (one request per venue).
    bulk_round_seconds: float = 5.0
    # "stream": venues with a WebSocket ticker stream push their quotes (polled while it is
    # down); "poll": every venue is polled.
    ingest: str = "stream"
    # VENUE=WS_BASE_URL overrides of the venues' stream addresses.
    exchange_streams: Mapping[str, str] = field(default_factory=dict)
    # An asset whose streamed quotes moved is aggregated again at most this often.
    aggregate_min_interval_seconds: float = 0.25
    # A stream silent this long counts as dead and is replaced.
    stream_stall_seconds: float = 10.0
    # How often venues' listings are loaded again (sooner while one has never loaded).
    listing_refresh_seconds: float = 3_600.0
    exchange_timeout_seconds: float = 2.0
    # Use an exchange's bulk endpoint (``.../tickers?symbols=``) for scheduled rounds.
    exchange_bulk: bool = True
    symbols_file: Path = DEFAULT_SYMBOLS_FILE
    prices_table: str = "prices"
    cache_ttl_seconds: int = 300
    aws_region: str = "us-west-2"
    # None lets botocore resolve AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL itself.
    dynamodb_endpoint: str | None = None
    history_batch_size: int = 25
    # Who writes the outbox into DynamoDB: "process" (a child process of the server), "inline"
    # (a task of the serving process, for the smallest deployments) or "external" (writers run
    # elsewhere: ``aggserver history-writer``).
    history_writer: str = "process"
    # Records held in this process while Redis cannot be reached (appended when it is back).
    history_max_pending: int = 100_000
    # The outbox's bound: past it the oldest records are dropped, counted and logged.
    history_outbox_max_records: int = 1_000_000
    # How long a writer may hold entries without a sign of life before another takes them over.
    history_claim_idle_seconds: float = 30.0
    # Record a new aggregate only when it moved more than this fraction since the last record,
    # or when the heartbeat has passed; 0 records every aggregate (the default when polling;
    # STREAMING_HISTORY_DEVIATION when venues stream).
    history_deviation: float = 0.0
    history_heartbeat_seconds: float = 3_600.0
    # How long shutdown waits for queued history to reach DynamoDB before giving up on it.
    history_flush_seconds: float = 20.0
    # History queries (pages, candle ranges) one process runs at once; more are refused (429).
    history_max_queries: int = 4
    # History records and candles one process decodes a second at most; past it, 429.
    history_records_per_second: float = 10_000.0
    auto_refresh: bool = True
    # POST /refresh triggers outbound requests, so it is guarded: an optional bearer token, a
    # minimum interval per asset (inside it the cached price answers) and a global rate.
    refresh_token: str | None = None
    refresh_min_interval_seconds: float = 1.0
    refresh_rate_limit: float = 100.0
    # An idle connection, or one still sending its request headers, is closed after this long.
    keepalive_seconds: float = 15.0
    # Live streams (SSE and WebSocket) this process serves at once, and assets per stream.
    stream_max_connections: int = 2_000
    stream_max_assets: int = 100
    # Interval of the SSE heartbeat comment and the WebSocket ping.
    stream_heartbeat_seconds: float = 15.0
    # How long the refresh lease outlives its holder: the worst-case takeover time.
    lease_seconds: float = 10.0
    # The refresh work (polling by tier, venue streams) cut into this many shards of the assets,
    # shared out among the instances through leases in Redis.
    refresh_shards: int = 1
    hot_assets: int = 20
    hot_interval_seconds: float = 5.0
    medium_assets: int = 180
    medium_interval_seconds: float = 30.0
    cold_interval_seconds: float = 300.0
    refresh_budget_seconds: float = 3.0
    exchange_concurrency: int = 32
    breaker_failures: int = 5
    breaker_reset_seconds: float = 5.0
    outlier_threshold: float = 0.05
    quote_max_age_seconds: float = 120.0
    promote_gets_per_second: float = 1.0
    promote_max: int = 200
    # Each client's request budget: cost units a second and the most it can save up (0: off).
    client_budget_per_second: float = 5_000.0
    client_budget_burst: float = 20_000.0
    # Addresses never limited (a gateway that limits on its own), and proxies whose
    # X-Forwarded-For names the real client.
    client_budget_exempt: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    # Control messages one WebSocket may send a second, and the burst it may save up.
    ws_messages_per_second: float = 10.0
    ws_message_burst: int = 20
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = False
    # Count requests by route and status and time them (exported on /metrics).
    request_metrics: bool = True
    # The variables these settings were read from, handed on to child processes.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); raise ConfigError if malformed."""
        env = os.environ if environ is None else environ
        defaults = cls()
        urls = tuple(u.strip().rstrip("/") for u in env.get("EXCHANGE_URLS", "").split(",") if u.strip())
        settings = cls(
            host=env.get("HOST", defaults.host),
            port=_int(env, "PORT", defaults.port, minimum=0, maximum=65535),
            redis_url=env.get("REDIS_URL", defaults.redis_url),
            redis_cluster=_bool(env, "REDIS_CLUSTER", defaults.redis_cluster),
            redis_max_connections=_int(
                env, "REDIS_MAX_CONNECTIONS", defaults.redis_max_connections, minimum=2
            ),
            redis_timeout_seconds=_float(env, "REDIS_TIMEOUT_SECONDS", defaults.redis_timeout_seconds),
            near_cache_seconds=_float(
                env, "NEAR_CACHE_SECONDS", defaults.near_cache_seconds, allow_zero=True
            ),
            exchange_urls=urls or defaults.exchange_urls,
            exchanges=parse_exchanges(env["EXCHANGES"])
            if env.get("EXCHANGES", "").strip()
            else _mockex_exchanges(urls or defaults.exchange_urls),
            rate_shares={
                venue: _share(env, f"{venue.upper()}_RATE_SHARE")
                for venue in VENUES
                if env.get(f"{venue.upper()}_RATE_SHARE", "").strip()
            },
            bulk_round_seconds=_float(env, "BULK_ROUND_SECONDS", defaults.bulk_round_seconds),
            ingest=env.get("INGEST", defaults.ingest).strip().lower(),
            exchange_streams=parse_stream_urls(env.get("EXCHANGE_STREAMS", "")),
            aggregate_min_interval_seconds=_float(
                env, "AGGREGATE_MIN_INTERVAL_SECONDS", defaults.aggregate_min_interval_seconds
            ),
            stream_stall_seconds=_float(env, "STREAM_STALL_SECONDS", defaults.stream_stall_seconds),
            listing_refresh_seconds=_float(env, "LISTING_REFRESH_SECONDS", defaults.listing_refresh_seconds),
            exchange_timeout_seconds=_float(
                env, "EXCHANGE_TIMEOUT_SECONDS", defaults.exchange_timeout_seconds
            ),
            exchange_bulk=_bool(env, "EXCHANGE_BULK", defaults.exchange_bulk),
            symbols_file=Path(env.get("SYMBOLS_FILE") or defaults.symbols_file),
            prices_table=env.get("PRICES_TABLE", defaults.prices_table),
            cache_ttl_seconds=_int(env, "CACHE_TTL_SECONDS", defaults.cache_ttl_seconds, minimum=1),
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or defaults.aws_region,
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL") or None,
            history_batch_size=_int(
                env, "HISTORY_BATCH_SIZE", defaults.history_batch_size, minimum=1, maximum=25
            ),
            history_writer=env.get("HISTORY_WRITER", defaults.history_writer).strip().lower(),
            history_max_pending=_int(env, "HISTORY_MAX_PENDING", defaults.history_max_pending, minimum=1),
            history_outbox_max_records=_int(
                env, "HISTORY_OUTBOX_MAX_RECORDS", defaults.history_outbox_max_records, minimum=1
            ),
            history_claim_idle_seconds=_float(
                env, "HISTORY_CLAIM_IDLE_SECONDS", defaults.history_claim_idle_seconds
            ),
            history_deviation=_float(
                env,
                "HISTORY_DEVIATION",
                STREAMING_HISTORY_DEVIATION if _streaming(env) else defaults.history_deviation,
                allow_zero=True,
            ),
            history_heartbeat_seconds=_float(
                env, "HISTORY_HEARTBEAT_SECONDS", defaults.history_heartbeat_seconds
            ),
            history_flush_seconds=_float(env, "HISTORY_FLUSH_SECONDS", defaults.history_flush_seconds),
            history_max_queries=_int(env, "HISTORY_MAX_QUERIES", defaults.history_max_queries, minimum=1),
            history_records_per_second=_float(
                env, "HISTORY_RECORDS_PER_SECOND", defaults.history_records_per_second
            ),
            stream_max_connections=_int(
                env, "STREAM_MAX_CONNECTIONS", defaults.stream_max_connections, minimum=1
            ),
            stream_max_assets=_int(env, "STREAM_MAX_ASSETS", defaults.stream_max_assets, minimum=1),
            stream_heartbeat_seconds=_float(
                env, "STREAM_HEARTBEAT_SECONDS", defaults.stream_heartbeat_seconds
            ),
            auto_refresh=_bool(env, "AUTO_REFRESH", defaults.auto_refresh),
            refresh_token=env.get("REFRESH_TOKEN") or None,
            refresh_min_interval_seconds=_float(
                env, "REFRESH_MIN_INTERVAL_SECONDS", defaults.refresh_min_interval_seconds, allow_zero=True
            ),
            refresh_rate_limit=_float(
                env, "REFRESH_RATE_LIMIT", defaults.refresh_rate_limit, allow_zero=True
            ),
            keepalive_seconds=_float(env, "KEEPALIVE_SECONDS", defaults.keepalive_seconds),
            lease_seconds=_float(env, "LEASE_SECONDS", defaults.lease_seconds),
            refresh_shards=_int(env, "REFRESH_SHARDS", defaults.refresh_shards, minimum=1, maximum=256),
            hot_assets=_int(env, "HOT_ASSETS", defaults.hot_assets, minimum=0),
            hot_interval_seconds=_float(env, "HOT_INTERVAL_SECONDS", defaults.hot_interval_seconds),
            medium_assets=_int(env, "MEDIUM_ASSETS", defaults.medium_assets, minimum=0),
            medium_interval_seconds=_float(env, "MEDIUM_INTERVAL_SECONDS", defaults.medium_interval_seconds),
            cold_interval_seconds=_float(env, "COLD_INTERVAL_SECONDS", defaults.cold_interval_seconds),
            refresh_budget_seconds=_float(env, "REFRESH_BUDGET_SECONDS", defaults.refresh_budget_seconds),
            exchange_concurrency=_int(env, "EXCHANGE_CONCURRENCY", defaults.exchange_concurrency, minimum=1),
            breaker_failures=_int(env, "BREAKER_FAILURES", defaults.breaker_failures, minimum=1),
            breaker_reset_seconds=_float(env, "BREAKER_RESET_SECONDS", defaults.breaker_reset_seconds),
            outlier_threshold=_float(env, "OUTLIER_THRESHOLD", defaults.outlier_threshold),
            quote_max_age_seconds=_float(env, "QUOTE_MAX_AGE_SECONDS", defaults.quote_max_age_seconds),
            promote_gets_per_second=_float(env, "PROMOTE_GETS_PER_SECOND", defaults.promote_gets_per_second),
            promote_max=_int(env, "PROMOTE_MAX", defaults.promote_max, minimum=0),
            client_budget_per_second=_float(
                env, "CLIENT_BUDGET_PER_SECOND", defaults.client_budget_per_second, allow_zero=True
            ),
            client_budget_burst=_float(env, "CLIENT_BUDGET_BURST", defaults.client_budget_burst),
            client_budget_exempt=_addresses(env, "CLIENT_BUDGET_EXEMPT"),
            trusted_proxies=_addresses(env, "TRUSTED_PROXIES"),
            ws_messages_per_second=_float(env, "WS_MESSAGES_PER_SECOND", defaults.ws_messages_per_second),
            ws_message_burst=_int(env, "WS_MESSAGE_BURST", defaults.ws_message_burst, minimum=1),
            log_level=env.get("LOG_LEVEL", defaults.log_level).upper(),
            log_format=env.get("LOG_FORMAT", defaults.log_format).lower(),
            access_log=_bool(env, "ACCESS_LOG", defaults.access_log),
            request_metrics=_bool(env, "REQUEST_METRICS", defaults.request_metrics),
            environ=dict(env),
        )
        if settings.ingest not in INGEST_MODES:
            raise ConfigError(f"INGEST must be one of {', '.join(INGEST_MODES)}, got {settings.ingest!r}")
        if settings.history_writer not in HISTORY_WRITERS:
            raise ConfigError(
                f"HISTORY_WRITER must be one of {', '.join(HISTORY_WRITERS)}, got {settings.history_writer!r}"
            )
        if settings.log_format not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {settings.log_format!r}")
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {settings.log_level!r}"
            )
        if len(settings.prices_table) < 3:
            raise ConfigError("PRICES_TABLE must be at least 3 characters (a DynamoDB rule)")
        return settings

    def summary(self) -> str:
        """One line for the start-up log: what matters to an operator, and no secret."""
        return (
            f"listening on {self.host}:{self.port}; redis {redact_url(self.redis_url)}"
            f"{' (cluster)' if self.redis_cluster else ''}; dynamodb {self.dynamodb_endpoint or 'AWS'} "
            f"table {self.prices_table} in {self.aws_region}; exchanges "
            f"{', '.join(c.name for c in self.exchanges)}; "
            f"tiers hot {self.hot_assets}/{self.hot_interval_seconds:g} s, medium "
            f"{self.medium_assets}/{self.medium_interval_seconds:g} s, "
            f"cold {self.cold_interval_seconds:g} s; "
            f"auto refresh {'on' if self.auto_refresh else 'off'}; refresh token "
            f"{'required' if self.refresh_token else 'not required'}; history writer {self.history_writer}"
        )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``redis://:secret@host`` and the like)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not (value > 0 or (allow_zero and value == 0)) or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses; ConfigError for anything else."""
    addresses = tuple(a.strip() for a in env.get(name, "").split(",") if a.strip())
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses, got {address!r}") from None
    return addresses


def _share(env: Mapping[str, str], name: str) -> float:
    value = _float(env, name, 1.0)
    if value > 1:
        raise ConfigError(f"{name} must be above 0 and at most 1 (a share of the venue's limit), got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
