"""Starting the local backing services as child processes: redis-server, a DynamoDB-compatible
server and mock exchanges. Used by ``python -m devstack``, the test fixtures and the benchmarks,
so all three run the same processes the same way.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggserver.process.children import die_with_parent

__all__ = [
    "DUMMY_AWS_ENV",
    "Service",
    "dynamo_backend",
    "free_port",
    "local_dynamo_client",
    "port_is_free",
    "spawn",
    "start_dynamo",
    "start_mockex",
    "start_redis",
    "start_redis_cluster",
    "wait_ready",
]

# Local DynamoDB servers accept any credentials, but botocore refuses to sign without some.
DUMMY_AWS_ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_NODE_MAJOR = 20


class ServiceError(RuntimeError):
    """A child service did not start or did not become ready in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Service:
    """A running child process and the URL it serves."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and remove its scratch files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for step in self.cleanup:
            step()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, url: str, cwd: Path | None = None
) -> Service:
    log_dir = Path(tempfile.mkdtemp(prefix=f"aggserver-{name}-"))
    log_path = log_dir / "output.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            # Own session: Ctrl-C in a terminal reaches only us, so we stop children in order.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    service = Service(name=name, url=url, process=process, log_path=log_path)
    service.cleanup.append(lambda: shutil.rmtree(log_dir, ignore_errors=True))
    return service


def wait_ready(service: Service, probe: Callable[[], bool], timeout: float) -> Service:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        try:
            if probe():
                return service
        except Exception:  # noqa: BLE001, S110 - not up yet; the deadline decides
            pass
        time.sleep(0.05)
    tail = service.log_tail()
    service.stop()
    raise ServiceError(f"{service.name} did not become ready within {timeout} s:\n{tail}")


def start_redis(
    port: int | None = None, *, timeout: float = 10.0, cluster: bool = False, data_dir: Path | None = None
) -> Service:
    """A redis-server on 127.0.0.1, ready when it answers PING: throw-away (no persistence), or
    with ``data_dir`` keeping an append-only file there (fsync every second), so the history
    outbox survives a restart of Redis.

    With ``cluster`` it is a cluster node that holds no slots yet (see start_redis_cluster).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data_dir)]
    else:
        argv += ["--appendonly", "no"]
    scratch = None
    if cluster:
        # The node writes its cluster state file into --dir.
        scratch = tempfile.mkdtemp(prefix="aggserver-redis-node-")
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir", scratch]
    service = spawn("redis", argv, url=f"redis://127.0.0.1:{port}/0")
    if scratch is not None:
        service.cleanup.append(lambda: shutil.rmtree(scratch, ignore_errors=True))

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    return wait_ready(service, ping, timeout)


def _cluster_node_port() -> int:
    # A node also listens on its port + 10000 for the cluster bus.
    while True:
        port = free_port()
        if port + 10_000 <= 65_535 and port_is_free(port + 10_000):
            return port


def start_redis_cluster(nodes: int = 3, *, timeout: float = 30.0) -> list[Service]:
    """A Redis Cluster of ``nodes`` primaries on free ports, ready when every node says ``ok``.

    Any node's URL reaches the whole cluster (with ``REDIS_CLUSTER=true``).
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServiceError("redis-cli is not installed (apt-get install redis-tools)")
    services: list[Service] = []
    try:
        for _ in range(nodes):
            services.append(start_redis(_cluster_node_port(), cluster=True))
        addresses = [service.url.removeprefix("redis://").removesuffix("/0") for service in services]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

        def every_node_ok() -> bool:
            for address in addresses:
                host, port = address.split(":")
                command = [cli, "-h", host, "-p", port, "cluster", "info"]
                info = subprocess.run(command, capture_output=True, text=True, timeout=5).stdout
                if "cluster_state:ok" not in info:
                    return False
            return True

        wait_ready(services[0], every_node_ok, timeout)
    except BaseException:
        for service in services:
            service.stop()
        raise
    return services


def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _dynalite_cli() -> Path | None:
    for root in (Path(os.environ.get("DYNALITE_DIR", REPO_ROOT)), Path.cwd()):
        cli = root / "node_modules" / "dynalite" / "cli.js"
        if cli.is_file():
            return cli
    return None


def dynamo_backend() -> str:
    """Which local DynamoDB server we can run: 'dynalite' (preferred) or 'moto'."""
    major = _node_major()
    if major is not None and major >= MIN_NODE_MAJOR and _dynalite_cli() is not None:
        return "dynalite"
    if shutil.which("moto_server") or _moto_in_venv():
        return "moto"
    raise ServiceError(
        "no DynamoDB-compatible server: run `npm ci` (Node.js >= 20) or pip install moto[server]"
    )


def _moto_in_venv() -> bool:
    return (Path(sys.executable).parent / "moto_server").exists()


def start_dynamo(
    port: int | None = None,
    *,
    path: Path | None = None,
    backend: str | None = None,
    timeout: float = 20.0,
) -> Service:
    """A local DynamoDB-compatible server; ``path`` keeps its data on disk (dynalite only).

    ``backend`` forces 'dynalite' or 'moto'; by default the best available one is used.
    Ready once a signed ListTables call succeeds, not when the port opens.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    backend = backend or dynamo_backend()
    if backend == "dynalite":
        argv = [
            "node",
            str(_dynalite_cli()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--createTableMs",
            "0",
        ]
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            argv += ["--path", str(path)]
    else:
        moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        argv = [moto, "-H", "127.0.0.1", "-p", str(port)]
    service = spawn(backend, argv, url=url)

    def list_tables() -> bool:
        local_dynamo_client(url).list_tables(Limit=1)
        return True

    return wait_ready(service, list_tables, timeout)


def local_dynamo_client(url: str) -> Any:
    """A plain (blocking) botocore client for a local DynamoDB-compatible server."""
    import botocore.session

    return botocore.session.get_session().create_client(
        "dynamodb",
        region_name="us-west-2",
        endpoint_url=url,
        aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def start_mockex(
    port: int | None = None,
    *,
    name: str = "exchange1",
    seed: int = 0,
    venue: str | None = None,
    listed: int | Sequence[str] | None = None,
    universe: str | None = None,
    symbols_file: Path | None = None,
    timeout: float = 15.0,
) -> Service:
    """One mock exchange in its own Python process; ready when its admin endpoint answers.

    ``venue`` makes it speak that venue's format for the first ``listed`` symbols, or for a
    realistic universe of its own (``universe="realistic:1500"``).
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "mockex", "--port", str(port), "--name", name, "--seed", str(seed)]
    if venue is not None:
        argv += ["--venue", venue]
    if listed is not None:
        argv += ["--listed", str(listed) if isinstance(listed, int) else ",".join(listed)]
    if universe is not None:
        argv += ["--universe", universe]
    if symbols_file is not None:
        argv += ["--symbols-file", str(symbols_file)]
    service = spawn(name, argv, url=f"http://127.0.0.1:{port}")

    def answers() -> bool:
        # S310: the URL is ours, always http://127.0.0.1.
        with urllib.request.urlopen(f"{service.url}/mock/admin/faults", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)

    return wait_ready(service, answers, timeout)
