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
  and a summary at ``GET /_local/metrics`` (``--emf`` prints the raw EMF documents too); the
  functions' log lines in a compact form (``--json-logs``: as the JSON CloudWatch gets);
- the admin routes behind a bearer token: ``ADMIN_TOKEN``, else one kept in ``.local/admin-token``;
- on the same port, the WebSocket API at ``ws://127.0.0.1:3000/ws`` (routes from template.yaml), its
  management API at ``/@connections/{id}`` and Lambda's Invoke API, so the functions' own boto3
  clients post to connections and start the broadcaster (local_stack/websocket.py, lambda_api.py).
Every setting is checked before anything starts. Ctrl-C stops everything it started, the fetcher
first: a slot being fetched finishes its writes before the servers it writes to stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

from local_stack import skewed_clock
from local_stack.admin_token import admin_token, token_file_problem
from local_stack.banner import admin_banner, stream_banner
from local_stack.environment import (
    DEFAULT_TABLE,
    PLACEHOLDER_HTTP_URL,
    PLACEHOLDER_REDIS_URL,
    PortSetting,
    function_environment,
    local_dir,
    local_environment,
    report_problems,
    settings_problems,
    use_function_code,
)
from local_stack.gateway import LOCAL_ADMIN_IAM
from local_stack.metrics_view import EmfTap, LocalMetrics
from local_stack.scheduler import STOP_WAIT_S, Scheduler
from local_stack.servers import port_in_use
from local_stack.services import (
    dynamodb,
    exchanges,
    recorded_stack,
    redis_url,
    say,
    simulator_variables,
)
from local_stack.template import (
    function_definition,
    http_routes,
    load_template,
    serverless_functions,
    websocket_api,
)

__all__ = ["function_environment", "keep_function_log_keys_apart", "main"]

METRICS_PAGE = "/_local/metrics"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="use the exchange simulators (Binance, Coinbase, Kraken; Binance.US too when EXCHANGES "
        "names binance_us) instead of the real APIs (offline)",
    )
    parser.add_argument("--port", help="the local HTTP API's port (default: PORT, else 3000)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--emf", action="store_true", help="print the raw EMF metric documents as well")
    parser.add_argument(
        "--json-logs",
        action="store_true",
        help="print the functions' log lines as the JSON CloudWatch gets, not in the compact local form",
    )
    return parser.parse_args(argv)


def keep_function_log_keys_apart() -> None:
    """On Lambda every function has its own process, so the keys Powertools' ``inject_lambda_context``
    appends (function_name, request id, ...) belong to that function. Here the functions share one
    process and one logger, each invocation in its own thread: its keys are made the thread's, so a
    fetcher line never carries the name of the prices request served last."""
    from market_data.observability import logger

    logger.append_keys = logger.thread_safe_append_keys  # type: ignore[method-assign]


def start_up_problems(
    args: argparse.Namespace, template: dict[str, Any], functions: list[str], local: dict[str, str]
) -> tuple[int, int, list[str]]:
    """The API's port, Binance's simulator port, and every problem with the settings, the ports
    included: all found before anything is started, so one message names them all."""
    port_name, port_text = (
        ("--port", args.port) if args.port is not None else ("PORT", os.environ.get("PORT"))
    )
    port, port_problem = PortSetting(port_name, port_text, 3000).read()
    simulator_port, simulator_problem = PortSetting(
        "SIMULATOR_PORT", os.environ.get("SIMULATOR_PORT"), 0, allow_zero=True
    ).read()
    problems = [problem for problem in (port_problem, simulator_problem) if problem]
    try:
        in_use = port_problem is None and port_in_use(port, args.host)
    except OSError as exc:  # a host name that does not resolve
        problems.append(f"--host: {args.host!r} is not an address to serve on ({exc})")
        in_use = False
    if in_use:
        advice = f"free it or choose another, e.g. PORT={port + 1}"
        problems.append(f"{port_name}: port {port} on {args.host} is in use; {advice}")
    if args.simulator and simulator_problem is None and simulator_port:
        if simulator_port == port:
            problems.append(f"SIMULATOR_PORT: port {simulator_port} is the API's own port ({port_name})")
        elif port_in_use(simulator_port):
            problems.append(
                f"SIMULATOR_PORT: port {simulator_port} is in use; free it or leave SIMULATOR_PORT unset"
            )
    problems += settings_problems(template, local, functions)
    if local_dir().exists() and not local_dir().is_dir():
        problems.append(f"LOCAL_STACK_DIR: {local_dir()} is not a directory")
    token_problem = token_file_problem()
    if token_problem:
        problems.append(token_problem)
    clock_problem = skewed_clock.read_offset(os.environ.get(skewed_clock.NAME))[1]
    if clock_problem:
        problems.append(clock_problem)
    return port, simulator_port, problems


def run(args: argparse.Namespace) -> int:
    # Before any function module is imported: their logger binds to the stdout it finds.
    local_metrics = LocalMetrics()
    sys.stdout = EmfTap(sys.stdout, local_metrics, echo_documents=args.emf, raw_logs=args.json_logs)
    template = load_template()
    functions = serverless_functions(template)
    use_function_code(template, functions)
    table_name = os.environ.get("MARKET_DATA_TABLE_NAME", DEFAULT_TABLE)
    # The stand-in for IAM signs admin requests as this principal (local_stack/gateway.py).
    admins = [LOCAL_ADMIN_IAM["userArn"]]
    placeholders = local_environment(
        redis_url=PLACEHOLDER_REDIS_URL,
        dynamodb_url=PLACEHOLDER_HTTP_URL,
        table_name=table_name,
        exchange_urls=dict.fromkeys(simulator_variables(), PLACEHOLDER_HTTP_URL) if args.simulator else {},
        admins=admins,
        api_url=PLACEHOLDER_HTTP_URL,
    )
    port, simulator_port, problems = start_up_problems(args, template, functions, placeholders)
    if problems:
        report_problems(problems, say)
        return 2
    token = admin_token()
    offset_s = skewed_clock.read_offset(os.environ.get(skewed_clock.NAME))[0]
    skewed_clock.apply(offset_s)
    if offset_s:
        say(f"clock: {offset_s:+g} s off this machine's ({skewed_clock.NAME}), as a server set wrong")
    # Where the functions reach the management API and Lambda's Invoke API: this stack's own port.
    api_url = f"http://{'127.0.0.1' if args.host in ('', '0.0.0.0') else args.host}:{port}"

    with contextlib.ExitStack() as stack:
        local = local_environment(
            redis_url=stack.enter_context(redis_url()),
            dynamodb_url=stack.enter_context(dynamodb(table_name)),
            table_name=table_name,
            exchange_urls=stack.enter_context(exchanges(args.simulator, binance_port=simulator_port)),
            admins=admins,
            api_url=api_url,
        )
        os.environ.update(function_environment(template, local))

        from fetcher.exchanges.registry import base_url
        from market_data.config import ConfigurationError, get_settings

        try:  # checked before start-up already: only a local server's own address can fail here
            settings = get_settings()
        except ConfigurationError as exc:
            say(f"error: {exc}")
            return 2

        from local_stack.gateway import LocalHttpApi, make_server
        from local_stack.lambda_api import LocalFunction, LocalLambdaApi
        from local_stack.websocket import LocalWebSocketApi

        keep_function_log_keys_apart()

        origins = [o for o in os.environ.get("CORS_ALLOWED_ORIGINS", "*").split(",") if o]
        api = LocalHttpApi(
            http_routes(template),
            cors_origins=origins,
            admin_token=token.value,
            local_pages={METRICS_PAGE: local_metrics.render_text},
        )
        fetcher = function_definition(template, "FetcherFunction")
        from fetcher.handler import lambda_handler as fetcher_handler

        scheduler = Scheduler(fetcher_handler, fetcher.timeout_seconds)
        lambdas = LocalLambdaApi(LocalFunction.from_template(template, name) for name in functions)
        stream = websocket_api(template)
        websocket = LocalWebSocketApi(stream, functions=lambdas.functions.values()) if stream else None
        server = make_server(api, args.host, port, websocket=websocket, lambdas=lambdas)
        base = f"http://{args.host}:{port}"
        # Unwound last to first: the fetcher returns, then what it started (the broadcaster), then
        # the WebSocket connections close (their $disconnect still reaching the table), then the
        # API stops serving; the functions keep their API until they return, and every one has
        # returned before anything it writes to stops.
        stack.callback(server.server_close)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        stack.callback(server.shutdown)
        if websocket is not None:
            stack.callback(websocket.close_all)
        stack.callback(lambdas.stop)
        stack.enter_context(recorded_stack(base, local))
        stack.callback(_stop_scheduler, scheduler)
        scheduler.start()

        sources = ", ".join(f"{name} {base_url(settings, name)}" for name in settings.exchanges)
        say(f"EXCHANGES (in order of preference): {sources}")
        say(f"TRADING_PAIRS: {list(settings.trading_pairs)}")
        if args.simulator:
            say(
                "a pair submitted to the whitelist is verified if a simulator above trades it (docs/local.md)"
            )
        say(f"serving on {base}  (Ctrl-C stops everything); the live page: {base}/")
        for route in api.routes:
            admin = "  (admin)" if route.route.iam else ""
            say(f"  {route.route.method} {base}{route.route.path}{admin}")
        say(f"  GET {base}{METRICS_PAGE}  (local only: the metrics CloudWatch would get)")
        pair = settings.trading_pairs[0] if settings.trading_pairs else "BTC/USDT"
        admin_banner(token, base, pair)
        say(f"try: curl '{base}/api/market-data/prices?pairs={','.join(settings.trading_pairs)}'")
        if websocket is not None:
            stream_banner(websocket, base, pair)
        try:
            # The API serves in its own threads; Ctrl-C's handler raises here. Short sleeps: the
            # kernel may hand the signal to any thread, and then this one runs the handler only
            # once its sleep ends (a long sleep left the stack running on, now and then).
            while True:
                time.sleep(0.25)
        except KeyboardInterrupt:
            say("stopping")
    return 0


def _stop_scheduler(scheduler: Scheduler) -> None:
    if not scheduler.stop():
        say(f"the fetcher did not return within {STOP_WAIT_S:g} s; stopping the servers under it")


def _interrupt(signum: int, frame: object) -> None:
    """The first Ctrl-C (or ``kill``) stops the stack in order. Another while it stops only says so:
    cutting the stop short would stop the servers under a fetcher still writing its slot."""
    signal.signal(signal.SIGINT, _still_stopping)
    signal.signal(signal.SIGTERM, _still_stopping)
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: object) -> None:
    # Straight to the descriptor: the interrupted thread may hold the output's lock.
    message = f"[local] still stopping: the fetcher's slot ends within {STOP_WAIT_S:g} s\n"
    os.write(sys.__stdout__.fileno() if sys.__stdout__ else 1, message.encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:  # during start-up: whatever had started is stopped by now
        say("stopped before serving")
        return 130


if __name__ == "__main__":
    sys.exit(main())
