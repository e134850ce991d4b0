"""The token bucket behind each client's fair share."""

from __future__ import annotations

import pytest

from aggserver.web.budget import TokenBucket


def test_token_bucket_refills_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(15, 0.0) == 0
    assert bucket.take(10, 0.0) == pytest.approx(0.5)  # 5 left, 5 more in half a second
    assert bucket.take(10, 0.5) == 0
    assert bucket.take(100, 10.0) == 0  # dearer than the burst: passes once full
    assert bucket.take(1, 10.0) == pytest.approx(0.1)
