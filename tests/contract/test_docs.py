"""Docs that check themselves: the README code map names every module, the errors module's
table matches the answers, and web/keys.py exports every application key."""

from __future__ import annotations

import re

from aiohttp import web

from aggserver import errors
from aggserver.web import keys
from aggserver.web.responses import ERROR_ANSWERS
from tests.paths import REPO_ROOT


def code_map() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    return readme[readme.index("### Code map") : readme.index("## The history outbox")]


def test_every_module_is_in_the_code_map() -> None:
    named = set(re.findall(r"`([\w/.]+\.(?:py|html))`", code_map()))
    missing = []
    for package in ("aggserver", "mockex", "bench", "devstack"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path.name in {"__init__.py", "__main__.py"}:
                continue
            relative = path.relative_to(REPO_ROOT / package).as_posix()
            if relative not in named:
                missing.append(f"{package}/{relative}")
    assert missing == []


def test_the_errors_table_matches_the_answers() -> None:
    rows = re.findall(r"^[ ├└│─]*(\w+) .*-> (\d{3})$", errors.__doc__ or "", re.MULTILINE)
    documented = dict(rows)
    answered = {kind.__name__: str(answer.status) for kind, answer in ERROR_ANSWERS.items()}
    assert documented == answered


def test_the_keys_module_exports_every_application_key() -> None:
    defined = {name for name, value in vars(keys).items() if isinstance(value, web.AppKey)}
    assert defined == set(keys.__all__)


def test_every_file_the_docs_name_exists() -> None:
    # A module moved or a test renamed leaves the prose pointing at nothing; find it here.
    named = set()
    for doc in ("README.md", "RELIABILITY.md", "BENCHMARKS.md"):
        text = (REPO_ROOT / doc).read_text()
        named |= set(re.findall(r"\b((?:aggserver|mockex|devstack|bench|tests|scripts)/[\w/]+\.\w+)", text))
    assert sorted(path for path in named if not (REPO_ROOT / path).exists()) == []
