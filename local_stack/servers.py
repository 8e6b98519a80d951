"""Local stand-ins for the AWS parts: a real redis-server and moto's DynamoDB over HTTP.

Used by the local stack and by the test suite, so both exercise the same real servers.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from local_stack.simulator_http import stop_serving


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) == 0


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stopped_with_parent() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` that has the child sent SIGTERM when the thread that started it
    ends: a parent killed outright (SIGKILL, a crash) then leaves no server behind. Looked up before
    the fork, so the child only makes one system call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port: nothing on disk, stopped on exit.

    ``own_process_group``: the terminal's Ctrl-C goes to every process of the foreground group, and
    redis-server stops at once on SIGINT, while the fetcher may still be writing a tick. The local
    stack starts it in a group of its own and stops it last, after the functions have returned.
    """

    def __init__(self, port: int | None = None, *, own_process_group: bool = False) -> None:
        self.port = port or free_port()
        self.own_process_group = own_process_group
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.launch()
        return self.wait_ready(timeout_s)

    def launch(self, extra_args: list[str] | None = None) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._dir.name, "--loglevel", "warning", *(extra_args or []),
        ]  # fmt: skip
        if self.own_process_group:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                process_group=0, preexec_fn=_stopped_with_parent(),
            )  # fmt: skip
        else:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout_s: float = 10.0) -> RedisServer:
        assert self.process is not None
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"redis-server exited on port {self.port}: {err.strip()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class _OneRequestAtATime:
    """WSGI wrapper: moto checks a transaction's conditions and then applies it without a lock, so
    two concurrent transactions on one item could both pass. DynamoDB serialises them (one fails
    with a conflict); answering one request at a time keeps that guarantee in the emulator."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))  # the body is produced inside the lock


class MotoServer:
    """moto's server mode on a free loopback port: DynamoDB over real HTTP."""

    def __init__(self, port: int | None = None) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per call is noise
        self.port = port or free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        stop_serving(self._server, self._thread)
        self._server = self._thread = None


def create_table_from_template(endpoint_url: str, table_name: str, template_path: Path | None = None) -> None:
    """Create the market-data table exactly as template.yaml defines it."""
    import boto3

    from local_stack.template import load_template, table_create_kwargs

    template = load_template() if template_path is None else load_template(template_path)
    client = boto3.client("dynamodb", endpoint_url=endpoint_url)
    client.create_table(**table_create_kwargs(template, "MarketDataTable", table_name))
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 20})


class RedisClusterServers:
    """A local 3-node Redis Cluster (no replicas), as ElastiCache Serverless speaks cluster mode."""

    def __init__(self, nodes: int = 3) -> None:
        self.nodes = [RedisServer() for _ in range(nodes)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout_s: float = 20.0) -> RedisClusterServers:
        cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        for node in self.nodes:  # launched together, then awaited: start-up overlaps
            # The bus port defaults to port + 10000, past 65535 for a high free port: pick one.
            node.launch([*cluster_args, "--cluster-port", str(free_port())])
        for node in self.nodes:
            node.wait_ready(timeout_s)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout_s,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:  # the nodes agree on the slot map a moment after `create` returns
            states = []
            for node in self.nodes:
                client = redis.Redis(port=node.port, socket_connect_timeout=0.5)
                try:
                    info: dict[str, str] = client.cluster("info")  # type: ignore[assignment]
                    states.append(info.get("cluster_state"))
                finally:
                    client.close()
            if all(state == "ok" for state in states):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not settle: {states}")
            time.sleep(0.1)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
