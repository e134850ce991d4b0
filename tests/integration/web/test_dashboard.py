"""The dashboard at / and its /status feed; the page itself is checked in headless Chromium."""

from __future__ import annotations

import os
import shutil
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from aggserver.settings import Settings
from devstack.services import Service, free_port
from tests.paths import ARTIFACTS
from tests.support import Exchanges, answers, checked, child_server, poll, server_env

Client = TestClient[Any, Any]
ARTIFACTS = ARTIFACTS
# Flags for a headless Chromium on a closed network (no sandbox needs: we run as any user).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_dashboard_page_is_self_contained(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "<script>" in page
    assert "/stream?assets=" in page
    assert "http://" not in page
    assert "https://" not in page  # no CDN: everything comes from this server


async def test_status_reports_tiers_exchanges_and_refreshes(client: Client, exchanges: Exchanges) -> None:
    await exchanges.set_faults(2, mode="down")
    assert (await client.post("/refresh/btcusdt")).status == 200
    body = await checked(await client.get("/status"))
    assert body["hot"][:2] == ["btcusdt", "ethusdt"]
    by_name = {e["name"]: e for e in body["exchanges"]}
    assert len(by_name) == 3
    assert sum(e["errors"] for e in body["exchanges"]) == 1
    assert all(e["circuit"] == "closed" for e in body["exchanges"])
    assert body["refresh"]["outcomes"] == {"hot": {"ok": 1}}
    assert body["streams"] == 0


# Each chart and the element a screenshot of it shows.
CHARTS = {
    "sparklines": "#hot",
    "candles": "#candle-panel",
    "freshness": "#ages",
    "exchanges": "#exchange-rates",
}
# How many pixels of a canvas are painted: a chart that drew nothing has none.
PAINTED = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) painted++;
  return painted;
}"""


async def check_charts(page: Any) -> None:
    """Every chart draws from live data, and the candle chart follows the interval switch."""
    spark = "#hot tr[data-asset=btcusdt] canvas.spark"
    # Hot prices come every second over the stream: the sparkline gains points.
    await page.wait_for_function(
        f"Number(document.querySelector('{spark}').dataset.points) >= 3", timeout=30_000
    )
    assert await page.evaluate(PAINTED, spark) > 0

    # Candles of the asset looked up; its records reach DynamoDB within moments of each refresh.
    async def candles_in(interval: str) -> bool:
        await page.click(f"#intervals button[data-interval='{interval}']")
        await page.wait_for_function(f"document.getElementById('candles').dataset.interval === '{interval}'")
        return bool(await page.evaluate("Number(document.getElementById('candles').dataset.candles) >= 1"))

    await poll(lambda: candles_in("1m"), timeout=30, interval=1)
    assert await page.evaluate(PAINTED, "#candles") > 0
    assert await candles_in("5m")
    assert await page.get_attribute("#candles", "data-asset") == "ethusdt"
    # The age of every tier, and each exchange's request rate (from two /status polls 5 s apart).
    await page.wait_for_function("Number(document.getElementById('ages').dataset.tiers) >= 1", timeout=30_000)
    assert await page.evaluate(PAINTED, "#ages") > 0
    await page.wait_for_function(
        "Number(document.getElementById('exchange-rates').dataset.points) >= 6", timeout=30_000
    )
    assert await page.evaluate(PAINTED, "#exchange-rates") > 0


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Skipped only off CI: the test command installs Chromium, so on CI its absence is a failure.
@pytest.mark.skipif(
    _chromium() is None and os.environ.get("CI", "").lower() != "true",
    reason="Chromium is not installed (./dev test installs it via apt)",
)
async def test_dashboard_shows_live_prices_in_a_real_browser(
    settings: Settings, redis_service: Service, exchanges: Exchanges
) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    env = server_env(settings, redis_service.url, port, HOT_INTERVAL_SECONDS="1", AUTO_REFRESH="true")
    base = f"http://127.0.0.1:{port}"
    with child_server(env):
        async with aiohttp.ClientSession() as session:
            await poll(lambda: answers(session, f"{base}/prices/btcusdt"), timeout=60)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                await page.goto(f"{base}/")
                # Every hot asset gets a price, and the stream says it is live.
                await page.wait_for_function(
                    "document.querySelectorAll('#hot td.price[data-price]').length >= 20", timeout=30_000
                )
                await page.wait_for_function(
                    "document.getElementById('connection').textContent === 'live'", timeout=10_000
                )
                first = await page.locator("#hot tr[data-asset=btcusdt] td.price").get_attribute("data-price")
                assert first is not None
                assert float(first) > 0
                # Hot prices are refreshed every second and the mock market moves: the row changes.
                btc = "document.querySelector('#hot tr[data-asset=btcusdt] td.price')"
                await page.wait_for_function(f"{btc}.dataset.price !== '{first}'", timeout=30_000)
                exchanges_shown = await page.locator("#exchanges tr").count()
                assert exchanges_shown == 3
                await page.fill("#symbol", "ETHUSDT")
                await page.click("#search button")
                await page.wait_for_selector("#result p[data-price]", timeout=10_000)
                assert await page.locator("#result tr").count() == 4  # a header and three exchanges
                await check_charts(page)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
                for name, selector in CHARTS.items():
                    await page.locator(selector).screenshot(path=str(ARTIFACTS / f"chart-{name}.png"))
                phone = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                await phone.goto(f"{base}/")
                await phone.wait_for_function(
                    "document.querySelectorAll('#hot td.price[data-price]').length >= 20", timeout=30_000
                )
                width = await phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
                await phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            finally:
                await browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    for name in CHARTS:
        assert (ARTIFACTS / f"chart-{name}.png").stat().st_size > 0, name
