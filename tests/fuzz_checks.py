"""A schemathesis check for tests/test_fuzz.py, loaded through SCHEMATHESIS_HOOKS.

With every backend healthy, the only 5xx the contract allows is the refusal of a price older than
``max_age`` (503 naming the age), which the fuzzer meets whenever it draws a small ``max_age``.
Any other 5xx fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def no_unplanned_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    if response.status_code == 503 and "max_age" in (case.query or {}) and "age_seconds" in response.json():
        return None
    raise AssertionError(f"unplanned {response.status_code}: {response.text[:300]}")
