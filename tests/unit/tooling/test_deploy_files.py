"""The Dockerfile and compose file, checked against what the code really reads and serves
(no Docker engine runs here, so they are parsed, not built)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from aggserver.settings import Settings
from aggserver.web.routes.table import ROUTE_TABLES
from tests.paths import REPO_ROOT
from tests.support import setting_variables

# Every variable Settings.from_env reads, plus the credentials botocore reads itself.
KNOWN_VARIABLES = setting_variables() | {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


def dockerfile() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return data


def served_paths() -> set[str]:
    return {route.path for table in ROUTE_TABLES for route in table if hasattr(route, "path")}


def test_dockerfile_runs_the_server_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    assert "slim" in instructions[0][1]
    assert ("USER", "aggserver") in instructions
    assert ("EXPOSE", str(Settings().port)) in instructions
    assert ("CMD", '["aggserver", "serve"]') in instructions
    health = next(arg for kind, arg in instructions if kind == "HEALTHCHECK")
    path = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", health)
    assert path is not None
    assert int(path.group(1)) == Settings().port
    assert path.group(2) in served_paths()


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    kinds = [kind for kind, _ in dockerfile()]
    args = [arg for _, arg in dockerfile()]
    first_install = next(i for i, a in enumerate(args) if "pip install ." in a)
    source_copy = next(i for i, a in enumerate(args) if kinds[i] == "COPY" and a.startswith("aggserver"))
    assert first_install < source_copy


def test_compose_wires_services_by_variables_the_code_reads() -> None:
    services = compose()["services"]
    assert set(services) >= {"redis", "dynamodb", "exchange1", "exchange2", "exchange3", "aggserver"}
    server = services["aggserver"]
    env = server["environment"]
    assert set(env) <= KNOWN_VARIABLES, set(env) - KNOWN_VARIABLES
    assert server["command"] == ["aggserver", "serve"]
    assert server["ports"] == [f"{env['PORT']}:{env['PORT']}"]
    assert Settings.from_env({k: str(v) for k, v in env.items()}).exchange_urls == (
        "http://exchange1:8081/mock/ticker",
        "http://exchange2:8082/mock/ticker",
        "http://exchange3:8083/mock/ticker",
    )
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb:8000"
    assert all(dep["condition"] == "service_healthy" for dep in server["depends_on"].values())
    assert set(server["depends_on"]) == set(services) - {"aggserver"}


def test_compose_redis_keeps_the_outbox_across_restarts() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    data = command[command.index("--dir") + 1]
    assert f"redis-data:{data}" in redis["volumes"]
    assert "redis-data" in compose()["volumes"]


def test_compose_exchanges_listen_where_aggserver_looks() -> None:
    services = compose()["services"]
    for number in (1, 2, 3):
        exchange = services[f"exchange{number}"]
        args = exchange["command"]
        assert args[0] == "mockex"
        port = args[args.index("--port") + 1]
        assert exchange["ports"] == [f"{port}:{port}"]
        assert exchange["environment"]["MOCKEX_PORT"] == port
        assert "/mock/admin/faults" in " ".join(exchange["healthcheck"]["test"])


def test_compose_dynamodb_runs_the_pinned_dynalite() -> None:
    dynamo = compose()["services"]["dynamodb"]
    command = shlex.join(dynamo["command"])
    assert "npm ci" in command
    assert "dynalite/cli.js" in command
    assert "--port 8000" in command
    assert "./package-lock.json:/srv/package-lock.json:ro" in dynamo["volumes"]
