"""History records: numbers as DynamoDB stores them."""

from __future__ import annotations

from aggserver.history.records import format_number


def test_format_number_keeps_plain_digits() -> None:
    assert format_number(0.000012345678901) == "0.000012345678901"
    assert format_number(91255.04414968783) == "91255.04414968783"
    assert format_number(1e20) == "100000000000000000000"
