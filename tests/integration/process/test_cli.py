"""The console commands as real processes: start-up errors, SIGTERM, and the local stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from types_aiobotocore_dynamodb import DynamoDBClient

from aggserver.domain.symbols import Pair, load_symbols
from aggserver.history.outbox import OutboxKeys, read_state
from aggserver.settings import Settings
from devstack.services import Service, free_port, start_mockex
from mockex.universe import realistic_markets
from tests.support import child_server, poll, server_env, stop_with

SYMBOLS = ["btcusdt", "ethusdt", "solusdt", "adausdt", "xrpusdt", "dogeusdt", "dotusdt", "linkusdt"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggserver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("aggserver ")
    help_text = run_cli("serve", "--help").stdout
    assert "--port" in help_text
    assert "--host" in help_text
    mockex = subprocess.run(
        [sys.executable, "-m", "mockex", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--seed" in mockex.stdout


def test_bad_setting_fails_with_one_line() -> None:
    result = run_cli("serve", env={"PORT": "eighty"})
    assert result.returncode != 0
    assert result.stderr.strip() == "aggserver: PORT must be a whole number, got 'eighty'"


def test_unreadable_symbols_file_fails_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", env={"SYMBOLS_FILE": str(tmp_path / "none.csv")})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("aggserver: cannot read symbols file")


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url) as response:
            return (response.status, await response.json())
    except aiohttp.ClientError:
        return None


async def test_sigterm_flushes_history_and_exits_zero(
    settings: Settings, redis_service: Service, dynamo: DynamoDBClient, exchanges: Any
) -> None:
    port = free_port()
    env = server_env(settings, redis_service.url, port, AUTO_REFRESH="false", LOG_FORMAT="json")
    base = f"http://127.0.0.1:{port}"
    with child_server(env) as process:
        async with aiohttp.ClientSession() as session:
            await poll(lambda: _get_json(session, f"{base}/health"), timeout=30)
            for symbol in SYMBOLS:
                async with session.post(f"{base}/refresh/{symbol}") as response:
                    assert response.status == 200
        # LOG_FORMAT=json: every line is one JSON object; no access log by default.
        lines = stop_with(process, signal.SIGTERM)
    assert process.returncode == 0, lines
    assert any(re.match(r"history writer \S+ stopped: \d+ written", line["message"]) for line in lines), [
        line["message"] for line in lines
    ]
    assert not any("/refresh/" in line["message"] for line in lines)
    for symbol in SYMBOLS:
        items = await dynamo.query(
            TableName=settings.prices_table,
            KeyConditionExpression="asset = :a",
            ExpressionAttributeValues={":a": {"S": symbol}},
        )
        assert items["Count"] == 1, symbol


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def _run_stack(
    tmp_path: Path, *args: str, services: int, assets: int, asset: str = "btcusdt"
) -> dict[str, Any]:
    """``python -m devstack`` (``./dev run``) as a user runs it: wait for its banner, read ``asset``
    (with its sources), see the start-up round finish, press Ctrl-C, and check nothing is left
    running."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_URL", "AWS_ENDPOINT", "EXCHANGE_URLS", "EXCHANGES"))
    }
    env.update({"PORT": str(port), "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--data-dir", str(tmp_path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
        assert len(pids) == services, text
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await poll(lambda: _get_json(session, f"{base}/prices/{asset}"), timeout=30)
            async with session.post(f"{base}/refresh/{asset}") as response:
                assert response.status == 200
            status, body = await _get_json(session, f"{base}/prices/{asset.upper()}?detail=sources")
            assert status == 200
            assert body["asset"] == asset
            assert body["price"] > 0
        # Not a terminal: plain progress lines until the start-up round has priced everything.
        progress = []
        for line in process.stdout:
            if line.startswith("warm"):
                progress.append(line)
            if line.startswith("warmed up"):
                break
        assert progress[0].startswith("warming up: 0/")
        assert progress[-1].startswith(f"warmed up: {assets:,} assets priced")
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, rest
    assert not [pid for pid in pids if _pid_alive(pid)]
    assert (tmp_path / "dynalite").is_dir()
    # Redis keeps an append-only file there, so the history outbox outlives a restart.
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
    return dict(body)


async def test_stack_runs_everything_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    # redis, DynamoDB, three exchanges
    body = await _run_stack(tmp_path, services=5, assets=10_000)
    assert len(body["quotes"]) == 3


async def test_stack_on_venue_format_mocks_prices_btc_in_dollars(tmp_path: Path) -> None:
    # redis, DynamoDB, one mock per venue, each listing a realistic universe of 300 pairs: the
    # venues' universe is every pair any of them lists, and btc-usd converts all BTC's markets.
    venues = ("binance", "okx", "kraken")
    pairs = {symbol for venue in venues for symbol in realistic_markets(venue, 300)}
    body = await _run_stack(
        tmp_path,
        "--venues",
        ",".join(venues),
        "--venue-pairs",
        "300",
        services=5,
        assets=len(pairs),
        asset="btc-usd",
    )
    assert {q["exchange"] for q in body["quotes"]} == set(venues)
    converted = {q["quote_currency"] for q in body["quotes"] if q["accepted"]}
    assert {"usd", "usdt", "eur"} <= converted
    assert body["sources"] >= 6


async def test_venues_command_reports_each_venue(tmp_path: Path) -> None:
    okx = start_mockex(name="okx", venue="okx", listed=["btcusdt", "ethusdt"])
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        result = run_cli(
            "venues", env={"EXCHANGES": f"okx={okx.url},binance={dead}", "EXCHANGE_TIMEOUT_SECONDS": "1"}
        )
    finally:
        okx.stop()
    assert result.returncode == 1, result.stderr  # binance could not be read
    out = result.stdout
    assert f"okx (okx, {okx.url})" in out
    assert "listing      2 of our 10,000 symbols" in out
    assert re.search(
        r"btcusdt +[\d,.]+ volume [\d,.]+ at \d+ \(venue time\) as BTC-USDT; round trip \d+ ms", out
    )
    assert "rate limit   20 per 2 s" in out
    assert "binance (binance" in out
    assert "listing      failed" in out


async def test_sigterm_during_scheduled_refreshes_leaves_nothing_queued(
    settings: Settings, redis_service: Service, dynamo: DynamoDBClient, exchanges: Any, redis_client: Any
) -> None:
    port = free_port()
    env = server_env(
        settings,
        redis_service.url,
        port,
        HOT_INTERVAL_SECONDS="0.2",
        MEDIUM_INTERVAL_SECONDS="0.5",
        COLD_INTERVAL_SECONDS="2",
        LOG_FORMAT="json",
        # The queue may hold tens of thousands of records by now; give the flush what it needs.
        HISTORY_FLUSH_SECONDS="240",
    )
    with child_server(env) as process:
        async with aiohttp.ClientSession() as session:
            await poll(lambda: _get_json(session, f"http://127.0.0.1:{port}/health"), timeout=30)
        # The start-up round is done and the tier loops are busy when the signal arrives.
        await poll(lambda: _items_at_least(dynamo, settings.prices_table, 10_000), timeout=60, interval=0.5)
        lines = stop_with(process, signal.SIGTERM, timeout=280)
    assert process.returncode == 0
    written = next(
        int(found.group(1))
        for line in lines
        if (found := re.match(r"history writer \S+ stopped: (\d+) written", line["message"]))
    )
    assert written >= 10_000
    # The writer drained the outbox before the server exited.
    assert (await read_state(redis_client, OutboxKeys(settings.prices_table))).backlog == 0
    assert await _items_at_least(dynamo, settings.prices_table, 10_000)


async def _items_at_least(dynamo: DynamoDBClient, table: str, count: int) -> bool:
    try:
        found = 0
        paginator = dynamo.get_paginator("scan")
        async for page in paginator.paginate(TableName=table, Select="COUNT"):
            found += page["Count"]
    except dynamo.exceptions.ResourceNotFoundException:
        return False
    return found >= count


async def test_symbols_command_prints_the_venues_universe_to_freeze(tmp_path: Path) -> None:
    kraken = start_mockex(name="kraken", venue="kraken", listed=["btcusd", "usdtusd", "btcusdt"])
    okx = start_mockex(name="okx", venue="okx", listed=["btcusdt", "ethbtc", "btctry"])
    try:
        env = {"EXCHANGES": f"kraken={kraken.url},okx={okx.url}"}
        result = run_cli("symbols", env=env)
        shares = run_cli("venues", env=env)
    finally:
        kraken.stop()
        okx.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "symbol,base,quote,venues"
    # Ranked: the rates' markets first, then by how many venues list a pair; TRY is not wanted.
    assert lines[1:] == [
        "usdtusd,usdt,usd,kraken",
        "btcusdt,btc,usdt,kraken okx",
        "btcusd,btc,usd,kraken",
        "ethbtc,eth,btc,okx",
    ]
    frozen = tmp_path / "universe.csv"
    frozen.write_text(result.stdout)
    symbols = load_symbols(frozen)
    assert symbols.pairs["btcusdt"] == Pair("btcusdt", "btc", "usdt", ("kraken", "okx"))
    assert "universe     4 pairs (UNIVERSE=venues): kraken 3 (75%), okx 2 (50%)" in shares.stdout
