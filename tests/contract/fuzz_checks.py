"""A schemathesis check for tests/test_fuzz.py, loaded through SCHEMATHESIS_HOOKS.

With every backend healthy, the only 5xx the contract allows are the refusals a client asks for:
a price older than ``max_age`` (503 naming the age) and a price failing ``min_sources`` or
``max_dispersion`` (503 naming the rule), which the fuzzer meets whenever it draws small limits.
Any other 5xx fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def no_unplanned_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    query = case.query or {}
    if response.status_code == 503 and "max_age" in query and "age_seconds" in response.json():
        return None
    guarded = "min_sources" in query or "max_dispersion" in query
    if response.status_code == 503 and guarded and response.json().get("rule") in query:
        return None
    raise AssertionError(f"unplanned {response.status_code}: {response.text[:300]}")
