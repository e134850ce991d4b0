"""Where the tests find the repository's files, wherever in the test tree they live."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ARTIFACTS", "FIXTURES", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# Screenshots and other files a run leaves for people to look at (ignored by git).
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
