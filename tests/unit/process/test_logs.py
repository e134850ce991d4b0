"""Log lines never carry passwords from URLs."""

from __future__ import annotations

from aggserver.settings import redact_url


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("redis://:hunter2@cache.internal:6380/0") == "redis://:***@cache.internal:6380/0"
    assert redact_url("rediss://admin:pw@h/1") == "rediss://admin:***@h/1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
