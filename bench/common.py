"""What every scenario shares: the real servers, the service's environment, and percentiles."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIRS = (
    "layers/common",
    "functions/fetcher",
    "functions/prices_api",
    "functions/whitelist",
    "functions/stream",
    "functions/broadcaster",
)


def use_function_code() -> None:
    """Import the handlers from their own directories, as Lambda does (code + layer on sys.path)."""
    for folder in FUNCTION_DIRS:
        path = str(REPO_ROOT / folder)
        if path not in sys.path:
            sys.path.insert(0, path)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


@dataclass
class Row:
    """One line of the results table: a figure beside its limit and the target it is held to."""

    scenario: str
    case: str
    figures: dict[str, Any]
    limit: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Stack:
    redis_url: str
    dynamodb_url: str
    table: str
    exchange_url: str
    simulator: Any


class MotoProcess:
    """moto's server in a process of its own: DynamoDB's work then never takes the interpreter lock
    of the code under measurement, as a remote DynamoDB would not."""

    def __init__(self) -> None:
        from local_stack.servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> MotoProcess:
        import httpx

        from local_stack.servers import _stopped_with_parent

        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_stopped_with_parent(),  # a benchmark killed outright leaves no moto behind
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url, timeout=1)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto did not answer on {self.url} within {timeout_s:g} s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


@contextlib.contextmanager
def real_parts(
    *, latency_ms: float = 0.0, generated_pairs: int = 0, moto_process: bool = False
) -> Iterator[Stack]:
    """A redis-server, moto over HTTP with the template's table, and the Binance simulator.

    ``moto_process``: moto in a process of its own rather than a thread of this one."""
    use_function_code()
    from local_stack.binance_simulator import BinanceSimulator
    from local_stack.servers import MotoServer, RedisServer, create_table_from_template

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    redis_server = RedisServer().start()
    moto: MotoServer | MotoProcess = MotoProcess().start() if moto_process else MotoServer().start()
    table = f"market-data-bench-{uuid.uuid4().hex[:8]}"  # moto keeps tables per process
    create_table_from_template(moto.url, table)
    simulator = BinanceSimulator(seed=11)
    simulator.start()
    if generated_pairs:
        simulator.add_generated_symbols(generated_pairs)
    if latency_ms:
        simulator.set_fault("latency", latency_ms=latency_ms)
    try:
        yield Stack(redis_server.url, moto.url, table, simulator.base_url, simulator)
    finally:
        simulator.stop()
        moto.stop()
        redis_server.close()


def service_environment(stack: Stack, pairs: Sequence[str], **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": stack.redis_url,
        "REDIS_CLUSTER": "false",
        "DYNAMODB_ENDPOINT_URL": stack.dynamodb_url,
        "MARKET_DATA_TABLE_NAME": stack.table,
        # Only the Binance simulator runs here: no other exchange may be reached, real or not.
        "EXCHANGES": '["binance"]',
        "BINANCE_API_BASE_URL": stack.exchange_url,
        "TRADING_PAIRS": json.dumps(list(pairs)),
        "POWERTOOLS_SERVICE_NAME": "market-data",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "MarketData",
        **extra,
    }


def apply_environment(env: dict[str, str]) -> None:
    """Point the service at ``env`` and forget clients and settings made for another one."""
    use_function_code()
    os.environ.update(env)
    from market_data import cache, store
    from market_data.config import get_settings

    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()


def configure_service(stack: Stack, pairs: Sequence[str], **extra: str) -> dict[str, str]:
    """Point the in-process service at ``stack``, listing ``pairs``; the environment it was given."""
    env = service_environment(stack, pairs, **extra)
    apply_environment(env)
    return env


def generated_pairs(n: int) -> list[str]:
    return [f"SYM{i:04d}/USDT" for i in range(1, n + 1)]


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The handlers print their metric documents to stdout: keep them out of the table."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
