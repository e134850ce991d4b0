"""The packages' shape, as imports show it: the pure rules load no I/O, an HTTP helper does not
pull in the data plane, and the history writer's command loads no HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT

IO_LIBRARIES = ("aiohttp", "redis", "aiobotocore", "botocore", "asyncio", "uvloop", "prometheus_client")


def loaded_after(*modules: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``modules``."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(getattr(module, '__path__', []), name + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout))


def test_the_pure_rules_load_no_io() -> None:
    loaded = loaded_after("aggserver.domain", "aggserver.venues")
    assert sorted(lib for lib in IO_LIBRARIES if lib in loaded) == []


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        # A parameter parser needs the app keys, not the components behind them.
        ("aggserver.web.params", ("botocore", "aggserver.engine.scheduler", "aggserver.history.writer")),
        # The history writer's command runs a Redis -> DynamoDB loop: no HTTP server, no scheduler.
        (
            "aggserver.history.writer_process",
            ("aiohttp.web", "aggserver.web.app", "aggserver.engine.scheduler"),
        ),
        ("aggserver.cli", ("aiohttp.web", "botocore", "aggserver.web.app")),
    ],
)
def test_a_module_loads_only_what_it_needs(module: str, absent: tuple[str, ...]) -> None:
    loaded = loaded_after(module)
    assert sorted(name for name in absent if name in loaded) == []
