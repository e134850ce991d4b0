"""Settings come from the environment, with documented defaults and clear errors."""

from __future__ import annotations

import os

import pytest

from aggserver.errors import ConfigError
from aggserver.settings import DEFAULT_EXCHANGE_URLS, Settings
from aggserver.venues import VENUES
from tests.paths import REPO_ROOT
from tests.support import setting_variables


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.exchange_urls == DEFAULT_EXCHANGE_URLS
    assert settings.prices_table == "prices"
    assert settings.cache_ttl_seconds == 300
    assert settings.aws_region == "us-west-2"
    assert settings.dynamodb_endpoint is None


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "PORT": "9000",
            "EXCHANGE_URLS": "http://a:1/mock/ticker/, http://b:2/t",
            "CACHE_TTL_SECONDS": "60",
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:8000",
        }
    )
    assert settings.port == 9000
    assert settings.exchange_urls == ("http://a:1/mock/ticker", "http://b:2/t")
    assert settings.cache_ttl_seconds == 60
    assert settings.aws_region == "eu-west-1"
    assert settings.dynamodb_endpoint == "http://127.0.0.1:8000"


def test_service_specific_dynamodb_endpoint_wins() -> None:
    settings = Settings.from_env(
        {"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://dynamo:2"}
    )
    assert settings.dynamodb_endpoint == "http://dynamo:2"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("CACHE_TTL_SECONDS", "0"),
        ("EXCHANGE_TIMEOUT_SECONDS", "-1"),
        ("EXCHANGE_TIMEOUT_SECONDS", "nan"),
        ("HISTORY_BATCH_SIZE", "26"),
        ("PRICES_TABLE", "pr"),
    ],
)
def test_malformed_settings_are_rejected_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_every_setting_is_documented_in_the_readme() -> None:
    root = REPO_ROOT
    names = setting_variables()
    assert len(names) > 60
    readme = (root / "README.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in readme) == []


def test_exchanges_win_over_exchange_urls_and_rate_shares_are_per_venue() -> None:
    settings = Settings.from_env(
        {
            "EXCHANGES": "binance,kraken=http://127.0.0.1:9",
            "EXCHANGE_URLS": "http://a:1/t",
            "KRAKEN_RATE_SHARE": "0.5",
        }
    )
    assert [(c.name, c.base_url) for c in settings.exchanges] == [
        ("binance", "https://api.binance.com"),
        ("kraken", "http://127.0.0.1:9"),
    ]
    assert settings.rate_shares == {"kraken": 0.5}
    legacy = Settings.from_env({"EXCHANGE_URLS": "http://a:1/mock/ticker"})
    assert [(c.venue, c.name) for c in legacy.exchanges] == [("mockex", "a:1")]
    with pytest.raises(ConfigError, match="BINANCE_RATE_SHARE must be above 0 and at most 1"):
        Settings.from_env({"BINANCE_RATE_SHARE": "2"})
    readme = (REPO_ROOT / "README.md").read_text()
    assert all(f"`{venue.upper()}_RATE_SHARE`" in readme for venue in VENUES)


def test_the_data_plane_is_a_process_of_its_own_where_there_is_a_second_cpu() -> None:
    assert Settings.from_env({"DATA_PLANE": "inline"}).data_plane_mode == "inline"
    assert Settings.from_env({"DATA_PLANE": "external"}).data_plane_mode == "external"
    auto = Settings.from_env({})
    assert auto.data_plane == "auto"
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert auto.data_plane_mode == "inline"  # a second process would only share the core
        if len(allowed) >= 2:
            os.sched_setaffinity(0, allowed)
            assert auto.data_plane_mode == "process"
    finally:
        os.sched_setaffinity(0, allowed)
    with pytest.raises(ConfigError, match="DATA_PLANE"):
        Settings.from_env({"DATA_PLANE": "elsewhere"})
