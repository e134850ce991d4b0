"""The operator's kit: /metrics passes ``promtool check metrics``, the alert rules pass ``promtool
check rules``, and every metric the Grafana dashboard and the rules name exists in a live /metrics."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aggserver.settings import Settings
from aggserver.web.app import create_app
from tests.paths import REPO_ROOT
from tests.support import Exchanges, poll

Client = TestClient[Any, Any]
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "aggserver.json"
METRIC_NAME = re.compile(r"\b((?:aggserver|process|python)_[a-z_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: ./dev test installs Debian's prometheus package")
        pytest.skip("promtool is not installed (./dev test installs it)")
    return found


async def live_metrics(client: Client) -> str:
    # Some traffic first, so the labelled families have samples.
    await client.post("/refresh/btcusdt")
    await client.get("/prices/btcusdt")
    await client.get("/prices/nosuchcoin")
    return await (await client.get("/metrics")).text()


async def test_live_metrics_pass_promtool(client: Client, exchanges: Exchanges) -> None:
    text = await live_metrics(client)
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def named_metrics() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in expressions for name in METRIC_NAME.findall(expr)}


async def test_every_metric_the_dashboard_and_rules_name_is_served(
    settings: Settings, exchanges: Exchanges, aiohttp_client: Any, tmp_path: Path
) -> None:
    # A scheduling server on a few symbols, so the refresh rounds' figures exist too.
    symbols = tmp_path / "symbols.csv"
    symbols.write_text("symbol\nbtcusdt\nethusdt\nsolusdt\nbnbusdt\n")
    scheduling = dataclasses.replace(settings, auto_refresh=True, symbols_file=symbols, hot_assets=2)
    client = await aiohttp_client(create_app(scheduling))

    async def rounds_reported() -> str | None:
        text = await live_metrics(client)
        return text if 'aggserver_refresh_round_seconds{tier="hot"}' in text else None

    text = await poll(rounds_reported, timeout=30)
    served = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    named = named_metrics()
    assert {"aggserver_refresh_lease_held", "process_resident_memory_bytes"} <= named
    assert named - served == set()


def test_the_dashboard_covers_what_operators_watch() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("route", "latency", "near-cache", "refresh", "round", "exchange", "circuit", "history",
                  "stream", "cpu", "memory"):  # fmt: skip
        assert topic in titles, topic
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
