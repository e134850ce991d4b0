"""Typed settings, read from the environment in exactly one place."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aggserver.errors import ConfigError
from aggserver.venues import VENUES, VenueConfig, parse_exchanges
from aggserver.venues.streams import STREAMS, parse_stream_urls

__all__ = [
    "ACCEPT_BACKLOG",
    "DEFAULT_EXCHANGE_URLS",
    "DEFAULT_SYMBOLS_FILE",
    "READ_BY_HAND",
    "Settings",
    "redact_url",
    "setting",
]

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


def _venue_universe(env: Mapping[str, str]) -> bool:
    """Whether these settings price the venues' universe (UNIVERSE=venues, or auto with only
    venue adapters configured): thousands of pairs and their -usd prices."""
    universe = env.get("UNIVERSE", "auto").strip().lower()
    if universe != "auto" or not env.get("EXCHANGES", "").strip():
        return universe == "venues"
    return all(config.venue != "mockex" for config in parse_exchanges(env["EXCHANGES"]))


def _mockex_exchanges(urls: tuple[str, ...]) -> tuple[VenueConfig, ...]:
    """EXCHANGE_URLS as EXCHANGES entries: each a mockex-format exchange."""
    return parse_exchanges(",".join(f"mockex={url}" for url in urls))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def setting(
    default: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_zero: bool = False,
    choices: tuple[str, ...] = (),
    case: str = "lower",
) -> Any:
    """A field's limits for :meth:`Settings.from_env`: whole numbers within ``minimum`` and
    ``maximum``; other numbers positive (or 0 with ``allow_zero``); words among ``choices``
    (compared in ``case``)."""
    limits = {
        "minimum": minimum,
        "maximum": maximum,
        "allow_zero": allow_zero,
        "choices": choices,
        "case": case,
    }
    return field(default=default, metadata=limits)


def _read(env: Mapping[str, str], spec: Field[Any], default: Any) -> Any:
    """One field from the variable of its name in capitals, by its declared type."""
    name, limits = spec.name.upper(), spec.metadata
    if spec.type == "bool":
        return _bool(env, name, default)
    if spec.type == "int":
        return _int(env, name, default, minimum=limits.get("minimum"), maximum=limits.get("maximum"))
    if spec.type == "float":
        return _float(env, name, default, allow_zero=limits.get("allow_zero", False))
    if spec.type == "str":
        raw = env.get(name, default)
        choices = limits.get("choices", ())
        if not choices:
            return raw
        value = raw.strip().upper() if limits.get("case") == "upper" else raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value
    raise TypeError(f"Settings.{spec.name}: a {spec.type} is read by hand (add it to READ_BY_HAND)")


HISTORY_WRITERS = ("process", "inline", "external")
UNIVERSES = ("auto", "file", "venues")
DATA_PLANES = ("auto", "inline", "process", "external")
DEFAULT_UNIVERSE_QUOTES = ("usd", "usdt", "usdc", "eur", "btc", "eth")
INGEST_MODES = ("stream", "poll")
# The deviation gate's default while venues stream, or when the venues' universe is priced: an
# aggregate a second per asset would be 864 million records a day for 10,000 assets; 0.5 % or
# the hourly heartbeat records ~2.1 million (python -m bench.history_cost --stream; README,
# "Push ingestion"). The venues' universe polled every bulk round would be 45 million a day for
# 4,000 assets; gated, half a million (README, "The universe").
GATED_HISTORY_DEVIATION = 0.005

# The listening socket's accept queue. Deep, so a thousand clients connecting at once are not
# refused (with the usual 128, SYNs are dropped and clients wait a second or more to connect).
ACCEPT_BACKLOG = 4096


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything aggserver can be told; build with :meth:`from_env`."""

    host: str = "0.0.0.0"
    port: int = setting(8080, minimum=0, maximum=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # REDIS_URL names any one node of a Redis Cluster (ElastiCache cluster mode) instead.
    redis_cluster: bool = False
    redis_max_connections: int = setting(32, minimum=2)
    redis_timeout_seconds: float = 1.0
    # How long a process may answer from its own copy of a price; updates published through
    # Redis drop copies sooner. 0 reads Redis on every GET.
    near_cache_seconds: float = setting(5.0, allow_zero=True)
    exchange_urls: tuple[str, ...] = DEFAULT_EXCHANGE_URLS
    # EXCHANGES (venue adapters) when set; otherwise one mockex-format exchange per EXCHANGE_URLS.
    exchanges: tuple[VenueConfig, ...] = _mockex_exchanges(DEFAULT_EXCHANGE_URLS)
    # Share of each venue's published rate budget this process may use ({VENUE}_RATE_SHARE).
    rate_shares: Mapping[str, float] = field(default_factory=dict)
    # Assets that only bulk venues list are all refreshed this often (one request per venue).
    bulk_round_seconds: float = 5.0
    # "stream": venues with a WebSocket ticker stream push their quotes (polled while it is
    # down); "poll": every venue is polled.
    ingest: str = setting("stream", choices=INGEST_MODES)
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
    # What is priced: "file" (SYMBOLS_FILE), "venues" (every spot pair the configured venues
    # list, quoted in UNIVERSE_QUOTES and listed by UNIVERSE_MIN_VENUES of them), or "auto":
    # venues when every exchange is a real venue adapter, the file when any is mockex.
    universe: str = setting("auto", choices=UNIVERSES)
    # The quote currencies of the venues' universe, in the order USD rates are derived in: a
    # currency's rate comes only from markets quoted in those before it (usd first).
    universe_quotes: tuple[str, ...] = DEFAULT_UNIVERSE_QUOTES
    universe_min_venues: int = setting(1, minimum=1)
    # Whether each base asset gets a ``{base}-usd`` price (off: the pairs alone, as before).
    usd_prices: bool = True
    # Stablecoins whose USD rate may be taken as 1.0 where no venue lists a market that
    # measures it (the answer then says ``rate_assumed``); none by default.
    quote_pegs: tuple[str, ...] = ()
    prices_table: str = "prices"
    cache_ttl_seconds: int = setting(300, minimum=1)
    aws_region: str = "us-west-2"
    # None lets botocore resolve AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL itself.
    dynamodb_endpoint: str | None = None
    history_batch_size: int = setting(25, minimum=1, maximum=25)
    # Who writes the outbox into DynamoDB: "process" (a child process of the server), "inline"
    # (a task of the serving process, for the smallest deployments) or "external" (writers run
    # elsewhere: ``aggserver history-writer``).
    history_writer: str = setting("process", choices=HISTORY_WRITERS)
    # Records held in this process while Redis cannot be reached (appended when it is back).
    history_max_pending: int = setting(100_000, minimum=1)
    # The outbox's bound: past it the oldest records are dropped, counted and logged.
    history_outbox_max_records: int = setting(1_000_000, minimum=1)
    # How long a writer may hold entries without a sign of life before another takes them over.
    history_claim_idle_seconds: float = 30.0
    # Record a new aggregate only when it moved more than this fraction since the last record,
    # or when the heartbeat has passed; 0 records every aggregate (the default when polling;
    # GATED_HISTORY_DEVIATION when venues stream or the venues' universe is priced).
    history_deviation: float = 0.0
    history_heartbeat_seconds: float = 3_600.0
    # The half-life of every price's EMA (``ema_price``): a price held this long moves it half-way.
    ema_half_life_seconds: float = 300.0
    # How long shutdown waits for queued history to reach DynamoDB before giving up on it.
    history_flush_seconds: float = 20.0
    # History queries (pages, candle ranges) one process runs at once; more are refused (429).
    history_max_queries: int = setting(4, minimum=1)
    # History records and candles one process decodes a second at most; past it, 429.
    history_records_per_second: float = 10_000.0
    auto_refresh: bool = True
    # Where the refresh work (listings, polling, streams, aggregation, USD prices, the scheduler
    # and its leases) runs: "inline" (on the serving loop, as one process does everything),
    # "process" (a child process of the server: ``aggserver ingest``), "external" (data planes
    # run elsewhere, sharing the Redis), or "auto": process where this process may use two CPUs
    # or more, inline on one (a second process on the same core only competes with the first;
    # BENCHMARKS.md run T). Serving processes answer either way.
    data_plane: str = setting("auto", choices=DATA_PLANES)
    # POST /refresh triggers outbound requests, so it is guarded: an optional bearer token, a
    # minimum interval per asset (inside it the cached price answers) and a global rate.
    refresh_token: str | None = None
    refresh_min_interval_seconds: float = setting(1.0, allow_zero=True)
    refresh_rate_limit: float = setting(100.0, allow_zero=True)
    # An idle connection, or one still sending its request headers, is closed after this long.
    keepalive_seconds: float = 15.0
    # Live streams (SSE and WebSocket) this process serves at once, and assets per stream.
    stream_max_connections: int = setting(2_000, minimum=1)
    stream_max_assets: int = setting(100, minimum=1)
    # Interval of the SSE heartbeat comment and the WebSocket ping.
    stream_heartbeat_seconds: float = 15.0
    # How long the refresh lease outlives its holder: the worst-case takeover time.
    lease_seconds: float = 10.0
    # The refresh work (polling by tier, venue streams) cut into this many shards of the assets,
    # shared out among the instances through leases in Redis.
    refresh_shards: int = setting(1, minimum=1, maximum=256)
    hot_assets: int = setting(20, minimum=0)
    hot_interval_seconds: float = 5.0
    medium_assets: int = setting(180, minimum=0)
    medium_interval_seconds: float = 30.0
    cold_interval_seconds: float = 300.0
    refresh_budget_seconds: float = 3.0
    exchange_concurrency: int = setting(32, minimum=1)
    breaker_failures: int = setting(5, minimum=1)
    breaker_reset_seconds: float = 5.0
    outlier_threshold: float = 0.05
    quote_max_age_seconds: float = 120.0
    promote_gets_per_second: float = 1.0
    promote_max: int = setting(200, minimum=0)
    # Each client's request budget: cost units a second and the most it can save up (0: off).
    client_budget_per_second: float = setting(5_000.0, allow_zero=True)
    client_budget_burst: float = 20_000.0
    # Addresses never limited (a gateway that limits on its own), and proxies whose
    # X-Forwarded-For names the real client.
    client_budget_exempt: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    # Control messages one WebSocket may send a second, and the burst it may save up.
    ws_messages_per_second: float = 10.0
    ws_message_burst: int = setting(20, minimum=1)
    log_level: str = setting("INFO", choices=LOG_LEVELS, case="upper")
    log_format: str = setting("text", choices=LOG_FORMATS)
    access_log: bool = False
    # Count requests by route and status and time them (exported on /metrics).
    request_metrics: bool = True
    # The variables these settings were read from, handed on to child processes.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); raise ConfigError if malformed.

        A field is read from the variable of its name in capitals, by its type, within the limits
        its ``setting(...)`` declares; the fields in ``READ_BY_HAND`` are read below, by hand."""
        env = os.environ if environ is None else environ
        defaults = cls()
        values: dict[str, object] = {
            f.name: _read(env, f, getattr(defaults, f.name))
            for f in fields(cls)
            if f.name not in READ_BY_HAND
        }
        urls = tuple(u.strip().rstrip("/") for u in env.get("EXCHANGE_URLS", "").split(",") if u.strip())
        return cls(
            **values,  # type: ignore[arg-type]
            exchange_urls=urls or defaults.exchange_urls,
            exchanges=parse_exchanges(env["EXCHANGES"])
            if env.get("EXCHANGES", "").strip()
            else _mockex_exchanges(urls or defaults.exchange_urls),
            rate_shares={
                venue: _share(env, f"{venue.upper()}_RATE_SHARE")
                for venue in VENUES
                if env.get(f"{venue.upper()}_RATE_SHARE", "").strip()
            },
            exchange_streams=parse_stream_urls(env.get("EXCHANGE_STREAMS", "")),
            symbols_file=Path(env.get("SYMBOLS_FILE") or defaults.symbols_file),
            universe_quotes=_codes(env, "UNIVERSE_QUOTES") or defaults.universe_quotes,
            quote_pegs=_codes(env, "QUOTE_PEGS"),
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or defaults.aws_region,
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL") or None,
            history_deviation=_float(
                env,
                "HISTORY_DEVIATION",
                GATED_HISTORY_DEVIATION
                if _streaming(env) or _venue_universe(env)
                else defaults.history_deviation,
                allow_zero=True,
            ),
            refresh_token=env.get("REFRESH_TOKEN") or None,
            client_budget_exempt=_addresses(env, "CLIENT_BUDGET_EXEMPT"),
            trusted_proxies=_addresses(env, "TRUSTED_PROXIES"),
            environ=dict(env),
        )

    def __post_init__(self) -> None:
        if len(self.prices_table) < 3:
            raise ConfigError("PRICES_TABLE must be at least 3 characters (a DynamoDB rule)")

    @property
    def universe_source(self) -> str:
        """``file`` or ``venues``: what UNIVERSE=auto comes to with these exchanges."""
        if self.universe != "auto":
            return self.universe
        return "file" if any(c.venue == "mockex" for c in self.exchanges) else "venues"

    @property
    def data_plane_mode(self) -> str:
        """``inline``, ``process`` or ``external``: what DATA_PLANE=auto comes to here."""
        if self.data_plane != "auto":
            return self.data_plane
        return "process" if len(os.sched_getaffinity(0)) >= 2 else "inline"

    @property
    def rate_currencies(self) -> tuple[str, ...]:
        """The quote currencies that are converted to USD through a rate of their own."""
        return tuple(q for q in self.universe_quotes if q != "usd")

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


# Fields read by hand in from_env: lists, mappings, paths, optional values, fallbacks between
# variables, and defaults that depend on other settings.
READ_BY_HAND = frozenset(
    {
        "exchange_urls",
        "exchanges",
        "rate_shares",
        "exchange_streams",
        "symbols_file",
        "universe_quotes",
        "quote_pegs",
        "aws_region",
        "dynamodb_endpoint",
        "history_deviation",
        "refresh_token",
        "client_budget_exempt",
        "trusted_proxies",
        "environ",
    }
)


def _codes(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of currency codes, lowercased, each once."""
    codes = tuple(dict.fromkeys(c.strip().lower() for c in env.get(name, "").split(",") if c.strip()))
    bad = [c for c in codes if not c.isalnum() or len(c) > 16]
    if bad:
        raise ConfigError(f"{name} must list currency codes (letters and digits), got {', '.join(bad)}")
    return codes


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
