"""mockex is a separate program: it imports nothing of aggserver."""

from __future__ import annotations

import subprocess
import sys


def test_mockex_does_not_import_aggserver() -> None:
    code = "import sys, mockex.cli, mockex.app; sys.exit(any(m.startswith('aggserver') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
