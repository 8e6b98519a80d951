"""The local stand-ins the functions talk to: Redis, DynamoDB and the exchanges' simulators.

Shared by ``make dev``/``make demo`` (``python -m local_stack``) and ``make invoke``
(``python -m local_stack.invoke``), so one function run alone sees the same services as the whole
stack. A running stack records its addresses in ``.local/stack.json`` while it runs, so that
``make invoke`` can use its data instead of empty servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local_stack.environment import local_dir
from local_stack.servers import MotoServer, RedisServer, create_table_from_template, free_port
from local_stack.simulator_http import SimulatorBase

STATE_FILE = "stack.json"
# The fault that makes an exchange fail every request until cleared: its pairs move to the next
# exchange in EXCHANGES that trades them (docs/local.md has the walk-through).
FAIL_EXCHANGE = {"fault": "server_error"}


def say(message: str) -> None:
    print(f"[local] {message}", flush=True)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if RedisServer.available():
        server = RedisServer(own_process_group=True).start()
        say(f"redis-server started on {server.url}")
        try:
            yield server.url
        finally:
            server.close()
        return
    from fakeredis import TcpFakeServer  # only where no redis-server binary exists

    port = free_port()
    fake = TcpFakeServer(("127.0.0.1", port))
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    say(f"no redis-server on PATH: using an in-process stand-in on port {port}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        fake.shutdown()


@contextlib.contextmanager
def dynamodb(table_name: str) -> Iterator[str]:
    import boto3

    if os.environ.get("DYNAMODB_ENDPOINT_URL"):
        endpoint = os.environ["DYNAMODB_ENDPOINT_URL"]
        if table_name not in boto3.client("dynamodb", endpoint_url=endpoint).list_tables()["TableNames"]:
            create_table_from_template(endpoint, table_name)
        yield endpoint
        return
    server = MotoServer().start()
    create_table_from_template(server.url, table_name)
    say(f"DynamoDB stand-in (moto) on {server.url}, table {table_name} from template.yaml")
    try:
        yield server.url
    finally:
        server.stop()


def configured_exchanges() -> list[str]:
    """The names in ``EXCHANGES``, as far as they read; the settings report a malformed value."""
    try:
        names = json.loads(os.environ.get("EXCHANGES", "[]"))
    except json.JSONDecodeError:
        return []
    return [str(name).strip().lower() for name in names] if isinstance(names, list) else []


def _binance_us_simulator() -> SimulatorBase[Any]:
    """Binance's protocol and default symbols, plus the USD pairs binance.us lists (binance.com does not)."""
    from local_stack.binance_simulator import BinanceSimulator

    simulator = BinanceSimulator(seed=1)  # its own random walk, not the Binance one's
    simulator.add_symbol("BTCUSD", "BTC", "USD", "TRADING", 66_990.0)
    simulator.add_symbol("ETHUSD", "ETH", "USD", "TRADING", 3_499.0)
    return simulator


def simulator_variables() -> list[str]:
    """The base-URL variables ``exchanges(True)`` will set, for the settings' check before it runs."""
    variables = ["BINANCE_API_BASE_URL", "COINBASE_API_BASE_URL", "KRAKEN_API_BASE_URL"]
    return variables + (["BINANCE_US_API_BASE_URL"] if "binance_us" in configured_exchanges() else [])


def fault_commands(url: str) -> tuple[str, str]:
    """The commands that make the simulator at ``url`` fail every request, and that recover it."""
    fail = f"curl -X POST {url}/_simulator/faults -d {shlex.quote(json.dumps(FAIL_EXCHANGE))}"
    return fail, f"curl -X DELETE {url}/_simulator/faults"


@contextlib.contextmanager
def exchanges(use_simulator: bool, *, binance_port: int = 0) -> Iterator[dict[str, str]]:
    """The exchanges' base URLs to give the functions. Without ``use_simulator``, none: the functions
    read them from this shell's environment, or fall back to the real APIs (the settings' defaults).
    With it, each simulator's line names the pairs it trades and how to make it fail."""
    if not use_simulator:
        yield {}
        return
    from local_stack.binance_simulator import BinanceSimulator
    from local_stack.coinbase_simulator import CoinbaseSimulator
    from local_stack.kraken_simulator import KrakenSimulator

    simulators: list[tuple[str, str, SimulatorBase[Any]]] = [  # (variable, name, simulator)
        ("BINANCE_API_BASE_URL", "Binance", BinanceSimulator(port=binance_port)),  # the others: free ports
        ("COINBASE_API_BASE_URL", "Coinbase", CoinbaseSimulator()),
        ("KRAKEN_API_BASE_URL", "Kraken", KrakenSimulator()),
    ]
    if "binance_us" in configured_exchanges():
        simulators.append(("BINANCE_US_API_BASE_URL", "Binance.US", _binance_us_simulator()))
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as started:
        for variable, name, simulator in simulators:
            url = simulator.start()
            started.callback(simulator.stop)
            say(f"{name} simulator on {url} trades {', '.join(simulator.traded_pairs())}")
            fail, recover = fault_commands(url)
            say(f"  fail it: {fail}    recover: {recover}")
            urls[variable] = url
        yield urls


# --- the running stack, for make invoke ----------------------------------------------------------------


@dataclass(frozen=True)
class RunningStack:
    pid: int
    api: str
    environment: dict[str, str]  # the local servers' variables the stack gave its functions


@contextlib.contextmanager
def recorded_stack(api: str, environment: dict[str, str]) -> Iterator[Path]:
    """Record this stack's addresses while it runs (removed on exit, if still ours)."""
    path = local_dir() / STATE_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "api": api, "environment": environment}
    temporary = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    temporary.replace(path)  # a reader never sees half a file
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def running_stack() -> RunningStack | None:
    """The stack recorded in ``.local/stack.json`` when it is still up (its process alive and its
    Redis answering), else None: a record left by a stack killed outright is ignored."""
    path = local_dir() / STATE_FILE
    try:
        record = json.loads(path.read_text())
        stack = RunningStack(int(record["pid"]), str(record["api"]), dict(record["environment"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(stack.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    address = urlsplit(stack.environment.get("REDIS_URL", ""))
    if address.scheme not in ("redis", "rediss") or address.port is None:
        return None
    try:
        socket.create_connection((address.hostname or "127.0.0.1", address.port), timeout=1).close()
    except OSError:
        return None
    return stack
