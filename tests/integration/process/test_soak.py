"""Faults under load against a real stack (tests/soak.py): a short run here, the long one with
--run-slow (its figures are in RELIABILITY.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.process.soak import FaultReport, Stack, print_table, run_faults

# Faults during which every GET must still be answered with a price (from memory while Redis is
# gone, from the cache while DynamoDB or the exchanges are).
READS_UNAFFECTED = (
    "redis killed",
    "redis paused",
    "dynamodb killed",
    "one exchange down",
    "one exchange slow",
    "all exchanges down",
    "history writer SIGKILL",
)


async def run(tmp_path: Path, scale: float, settle: float) -> list[FaultReport]:
    stack = Stack(tmp_path)
    try:
        stack.start()
        reports = await run_faults(stack, scale=scale, settle=settle)
    finally:
        stack.stop()
    print_table(reports)
    return reports


def check(reports: list[FaultReport]) -> None:
    assert len(reports) == 10
    for report in reports:
        assert report.sent > 0, report
        assert report.recovery_seconds is not None, f"no recovery after {report.fault}"
        if report.fault.startswith(READS_UNAFFECTED):
            assert report.ok == report.sent, report
    # Nothing lost: every aggregate a GET answered with reached DynamoDB.
    assert sum(r.history_expected for r in reports) > 100
    for report in reports:
        assert report.history_found == report.history_expected, report


async def test_faults_under_load_short(tmp_path: Path) -> None:
    check(await run(tmp_path, scale=1.0, settle=2.0))


@pytest.mark.slow
async def test_faults_under_load_long(tmp_path: Path) -> None:
    check(await run(tmp_path, scale=3.0, settle=5.0))
