"""``make dev`` / ``make demo``: the whole service on one machine, no AWS account, no Docker.

- the real handlers behind a local HTTP API on http://127.0.0.1:3000 (``PORT`` changes it),
  routes read from template.yaml, requests turned into API Gateway v2 events;
- the fetcher invoked every minute as EventBridge would, with a Lambda-like context;
- Redis from ``REDIS_URL``, else a local ``redis-server`` started here (an in-process stand-in
  only where no redis-server exists); DynamoDB from ``DYNAMODB_ENDPOINT_URL``, else a fresh
  moto server, the table made from template.yaml;
- the exchanges named in ``EXCHANGES`` at their ``*_API_BASE_URL`` (the real APIs by default), or
  with ``--simulator`` the project's simulators, for offline use: Binance (on ``SIMULATOR_PORT``
  when set), Coinbase and Kraken, and a second Binance-protocol one for Binance.US when
  ``EXCHANGES`` names binance_us;
- the metrics the functions would send to CloudWatch: one line per fetcher slot in the output,
  and a summary at ``GET /_local/metrics`` (``--emf`` prints the raw EMF documents too).
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from local_stack.gateway import LOCAL_ADMIN_IAM
from local_stack.lambda_context import LocalLambdaContext
from local_stack.metrics_view import EmfTap, LocalMetrics
from local_stack.servers import MotoServer, RedisServer, create_table_from_template, free_port, port_in_use
from local_stack.simulator_http import SimulatorBase
from local_stack.template import REPO_ROOT, function_definition, http_routes, load_template

SCHEDULE_SECONDS = 60  # rate(1 minute)
METRICS_PAGE = "/_local/metrics"
DEFAULT_TABLE = "market-data-local"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="use the exchange simulators (Binance, Coinbase, Kraken; Binance.US too when EXCHANGES "
        "names binance_us) instead of the real APIs (offline)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--emf", action="store_true", help="print the raw EMF metric documents as well")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[local] {message}", flush=True)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if RedisServer.available():
        server = RedisServer().start()
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


@contextlib.contextmanager
def exchanges(use_simulator: bool) -> Iterator[dict[str, str]]:
    """The exchanges' base URLs to give the functions. Without ``--simulator``, none: the functions
    read them from this shell's environment, or fall back to the real APIs (the settings' defaults)."""
    if not use_simulator:
        yield {}
        return
    from local_stack.binance_simulator import BinanceSimulator
    from local_stack.coinbase_simulator import CoinbaseSimulator
    from local_stack.kraken_simulator import KrakenSimulator

    binance_port = int(os.environ.get("SIMULATOR_PORT", "0"))  # the others take free ports
    simulators: list[tuple[str, str, SimulatorBase[Any]]] = [  # (variable, name, simulator)
        ("BINANCE_API_BASE_URL", "Binance", BinanceSimulator(port=binance_port)),
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
            say(f"{name} simulator on {url} (faults: POST {url}/_simulator/faults)")
            urls[variable] = url
        yield urls


def function_environment(template: dict[str, Any], local: dict[str, str]) -> dict[str, str]:
    """What the functions see: the template's literal values, then the local endpoints; anything
    already set in this shell wins, so every setting of DESIGN.md can be tried locally."""
    merged: dict[str, str] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            merged.update(function_definition(template, logical_id).environment)
    merged.update(local)
    return {name: value for name, value in merged.items() if name not in os.environ}


class Scheduler:
    """EventBridge ``rate(1 minute)``: a fetcher invocation every minute, overlapping like on AWS."""

    def __init__(self, handler: Any, timeout_s: int) -> None:
        self._handler, self._timeout_s = handler, timeout_s
        self._stop = threading.Event()
        self._running: list[tuple[threading.Thread, LocalLambdaContext]] = []
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            context = LocalLambdaContext("FetcherFunction", self._timeout_s)
            event = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
            thread = threading.Thread(target=self._invoke, args=(event, context), daemon=True)
            self._running = [(t, c) for t, c in self._running if t.is_alive()] + [(thread, context)]
            thread.start()
            self._stop.wait(SCHEDULE_SECONDS)

    def _invoke(self, event: dict[str, Any], context: LocalLambdaContext) -> None:
        try:
            self._handler(event, context)
        except Exception as exc:  # as on AWS, a failed invocation is logged and the next one comes
            say(f"fetcher invocation failed: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        for _, context in self._running:
            context.cancel()  # no time left: the loop returns after its current slot
        for thread, _ in self._running:
            thread.join(timeout=15)


def keep_function_log_keys_apart() -> None:
    """On Lambda every function has its own process, so the keys Powertools' ``inject_lambda_context``
    appends (function_name, request id, ...) belong to that function. Here the functions share one
    process and one logger, each invocation in its own thread: its keys are made the thread's, so a
    fetcher line never carries the name of the prices request served last."""
    from market_data.observability import logger

    logger.append_keys = logger.thread_safe_append_keys  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    if port_in_use(args.port, args.host):
        say(f"error: port {args.port} on {args.host} is in use; free it or choose another, e.g. PORT=3001")
        return 2
    # Before any function module is imported: their logger binds to the stdout it finds.
    local_metrics = LocalMetrics()
    sys.stdout = EmfTap(sys.stdout, local_metrics, echo_documents=args.emf)
    template = load_template()
    routes = http_routes(template)
    for code_dir in {r.code_uri for r in routes} | {"functions/fetcher", "layers/common"}:
        sys.path.insert(0, str(REPO_ROOT / code_dir))
    table_name = os.environ.get("MARKET_DATA_TABLE_NAME", DEFAULT_TABLE)
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    with contextlib.ExitStack() as stack:
        local = {
            "REDIS_URL": stack.enter_context(redis_url()),
            "REDIS_CLUSTER": "false",
            "DYNAMODB_ENDPOINT_URL": stack.enter_context(dynamodb(table_name)),
            "MARKET_DATA_TABLE_NAME": table_name,
            **stack.enter_context(exchanges(args.simulator)),
            # The stand-in for IAM signs admin requests as this principal (local_stack/gateway.py).
            "ADMIN_PRINCIPALS": json.dumps([LOCAL_ADMIN_IAM["userArn"]]),
            "POWERTOOLS_SERVICE_NAME": "market-data-local",
        }
        os.environ.update(function_environment(template, local))

        from fetcher.exchanges.registry import base_url, check_known
        from market_data.config import ConfigurationError, get_settings

        try:
            settings = get_settings()
            check_known(settings.exchanges)
        except ConfigurationError as exc:
            say(f"error: {exc}")
            return 2

        from local_stack.gateway import LocalHttpApi, make_server

        keep_function_log_keys_apart()

        origins = [o for o in os.environ.get("CORS_ALLOWED_ORIGINS", "*").split(",") if o]
        api = LocalHttpApi(
            routes,
            cors_origins=origins,
            admin_token=os.environ.get("ADMIN_TOKEN"),
            local_pages={METRICS_PAGE: local_metrics.render_text},
        )
        fetcher = function_definition(template, "FetcherFunction")
        from fetcher.handler import lambda_handler as fetcher_handler

        scheduler = Scheduler(fetcher_handler, fetcher.timeout_seconds)
        server = make_server(api, args.host, args.port)
        stack.callback(server.server_close)
        stack.callback(scheduler.stop)
        scheduler.start()

        base = f"http://{args.host}:{args.port}"
        sources = ", ".join(f"{name} {base_url(settings, name)}" for name in settings.exchanges)
        say(f"EXCHANGES (in order of preference): {sources}")
        say(f"TRADING_PAIRS: {list(settings.trading_pairs)}")
        say(f"serving on {base}  (Ctrl-C stops everything)")
        for route in api.routes:
            say(f"  {route.route.method} {base}{route.route.path}")
        say(f"  GET {base}{METRICS_PAGE}  (local only: the metrics CloudWatch would get)")
        say(f"try: curl '{base}/api/market-data/prices?pairs={','.join(settings.trading_pairs)}'")
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            say("stopping")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
