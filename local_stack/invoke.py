"""``make invoke``: one function's real handler on one event, as ``sam local invoke`` runs it, without Docker.

The function is the template's (its handler, its literal environment, its Timeout and memory for a
Lambda-like context), named with ``--function`` or found from the event: an HTTP API event's
``routeKey`` names its route, a WebSocket event's ``requestContext.routeKey`` its WebSocket route,
a scheduled event the scheduled function. Its answer is printed on
standard output as the JSON document Lambda returns; its logs go to standard error.

It runs against the services of a ``make dev`` / ``make demo`` running on this clone (its Redis,
DynamoDB stand-in and simulators, found in ``.local/stack.json``), so a prices read answers with
that stack's prices; without one (or with ``--fresh``), against a fresh ``redis-server`` and moto
server started for the run and stopped after it (empty: a prices read answers 503, as a cold cache
does), and with ``--simulator`` the exchange simulators too. ``REDIS_URL`` and
``DYNAMODB_ENDPOINT_URL``, when set, win over both.

Exit status: 0 when the handler returned (whatever its statusCode), 1 when it raised or ran past
its timeout (the error document is printed, as Lambda's), 2 for a bad event, function or setting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from local_stack.environment import (
    DEFAULT_TABLE,
    PLACEHOLDER_HTTP_URL,
    PLACEHOLDER_REDIS_URL,
    SAMPLE_EVENTS_ADMIN,
    function_environment,
    local_environment,
    report_problems,
    settings_problems,
    use_function_code,
)
from local_stack.gateway import LOCAL_ADMIN_IAM, load_handler
from local_stack.lambda_api import lambda_error
from local_stack.lambda_context import LocalLambdaContext
from local_stack.metrics_view import EmfTap, LocalMetrics
from local_stack.services import (
    RunningStack,
    dynamodb,
    exchanges,
    redis_url,
    running_stack,
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

# After its timeout, Lambda stops a function; here its thread cannot be stopped, so the answer is
# the timeout error and the process ends, the handler's thread with it.
TIMEOUT_GRACE_S = 1.0


class UsageError(Exception):
    """A bad event file or function name: exit status 2, the message says what to pass."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.invoke", description=__doc__.split("\n\n")[0].strip("`")
    )
    parser.add_argument(
        "event", help="a JSON event file, e.g. events/prices_get.json; - reads standard input"
    )
    parser.add_argument(
        "--function",
        help="the template's logical id, e.g. PricesApiFunction (default: the function the event is for)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds the context gives the function (default: its Timeout in template.yaml; "
        "FetcherFunction ticks until it runs short, so e.g. 10 runs it for a couple of slots)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start fresh local services even when make dev/demo runs"
    )
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="with fresh services: the exchange simulators instead of the exchanges' real APIs",
    )
    parser.add_argument("--emf", action="store_true", help="print the raw EMF metric documents as well")
    parser.add_argument(
        "--json-logs", action="store_true", help="print the function's log lines as JSON, not compact"
    )
    return parser.parse_args(argv)


def read_event(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the event {name}: {exc.strerror}") from None
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the event {name} is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise UsageError(f"the event {name} is not a JSON object")
    return event


def function_for(template: dict[str, Any], event: dict[str, Any], named: str | None) -> str:
    """The function to run: the one named, else the one whose route or schedule the event is for."""
    functions = serverless_functions(template)
    if named is not None:
        if named not in functions:
            raise UsageError(
                f"FUNCTION: no function {named!r} in template.yaml; its functions: {', '.join(functions)}"
            )
        return named
    request = event.get("requestContext")
    if isinstance(request, dict) and request.get("eventType") in ("CONNECT", "MESSAGE", "DISCONNECT"):
        stream = websocket_api(template)  # a WebSocket event: its route's function, else $default's
        routes = {route.route_key: route.function.logical_id for route in (stream.routes if stream else ())}
        chosen = routes.get(str(request.get("routeKey")), routes.get("$default"))
        if chosen is not None:
            return chosen
    route_key = event.get("routeKey")
    if isinstance(route_key, str):
        for route in http_routes(template):
            if f"{route.method} {route.path}" == route_key:
                return route.function_logical_id
        raise UsageError(f"no route {route_key!r} in template.yaml: name the function with FUNCTION=")
    if event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event":
        scheduled = [name for name in functions if function_definition(template, name).schedule_expression]
        if len(scheduled) == 1:
            return scheduled[0]
    raise UsageError(
        f"cannot tell which function the event is for: name it with FUNCTION= ({', '.join(functions)})"
    )


def run_handler(handler: Any, event: dict[str, Any], context: LocalLambdaContext) -> tuple[int, Any]:
    """Run the handler in a thread, as long as its timeout allows; Ctrl-C tells it no time is left
    (the fetcher then returns after its current slot). Returns (exit status, answer)."""
    outcome: dict[str, Any] = {}
    # An Event, not Thread.join: a join cut short by Ctrl-C can leave the thread looking finished.
    returned = threading.Event()

    def call() -> None:
        try:
            outcome["result"] = handler(event, context)
        except Exception as exc:  # the function failed: Lambda's error document, as sam prints it
            outcome["error"] = lambda_error(exc, context.aws_request_id)
        finally:
            returned.set()

    threading.Thread(target=call, name=context.function_name, daemon=True).start()
    try:
        returned.wait(context.timeout_s + TIMEOUT_GRACE_S)
    except KeyboardInterrupt:
        say("interrupted: the function is told no time is left")
        context.cancel()
        returned.wait(context.timeout_s + TIMEOUT_GRACE_S)
    if not returned.is_set():
        message = f"Task timed out after {context.timeout_s:.2f} seconds"
        return 1, {
            "errorMessage": message,
            "errorType": "Sandbox.Timedout",
            "requestId": context.aws_request_id,
        }
    if "error" in outcome:
        return 1, outcome["error"]
    return 0, outcome.get("result")


@contextlib.contextmanager
def services(args: argparse.Namespace, table_name: str, stack: RunningStack | None) -> Any:
    """The running stack's services, or fresh ones for this run."""
    if stack is not None:
        say(f"using the local stack running on {stack.api} (pid {stack.pid}): its cache, table and exchanges")
        yield dict(stack.environment)
        return
    if args.fresh:
        say("--fresh: local services for this run only")
    else:
        say("no make dev / make demo running from this clone: local services for this run only")
    for variable in ("REDIS_URL", "DYNAMODB_ENDPOINT_URL"):
        if os.environ.get(variable):
            say(f"{variable} from this shell: {os.environ[variable]}")
    with contextlib.ExitStack() as started:
        yield local_environment(
            redis_url=started.enter_context(redis_url()),
            dynamodb_url=started.enter_context(dynamodb(table_name)),
            table_name=table_name,
            exchange_urls=started.enter_context(exchanges(args.simulator)),
            admins=[LOCAL_ADMIN_IAM["userArn"], SAMPLE_EVENTS_ADMIN],
            # No WebSocket API runs for one invocation: a post or an invoke finds nothing listening.
            api_url=PLACEHOLDER_HTTP_URL,
        )


def invoke(args: argparse.Namespace, answer: TextIO) -> int:
    template = load_template()
    try:
        event = read_event(args.event)
        name = function_for(template, event, args.function)
    except UsageError as exc:
        say(f"error: {exc}")
        return 2
    definition = function_definition(template, name)
    use_function_code(template, [name])
    stack = None if args.fresh else running_stack()
    table_name = os.environ.get("MARKET_DATA_TABLE_NAME", DEFAULT_TABLE)
    admins = [LOCAL_ADMIN_IAM["userArn"], SAMPLE_EVENTS_ADMIN]
    if stack is not None:
        placeholders = {**stack.environment, "ADMIN_PRINCIPALS": json.dumps(admins)}
    else:
        simulated = simulator_variables() if args.simulator else []
        placeholders = local_environment(
            redis_url=PLACEHOLDER_REDIS_URL,
            dynamodb_url=PLACEHOLDER_HTTP_URL,
            table_name=table_name,
            exchange_urls=dict.fromkeys(simulated, PLACEHOLDER_HTTP_URL),
            admins=admins,
            api_url=PLACEHOLDER_HTTP_URL,
        )
    problems = settings_problems(template, placeholders, [name])
    if args.timeout is not None and not 0 < args.timeout <= 900:
        problems.append(
            f"TIMEOUT (--timeout): more than 0 and at most 900 s, as on Lambda (got {args.timeout:g})"
        )
    if problems:
        report_problems(problems, say)
        return 2

    with services(args, table_name, stack) as local:
        if stack is not None:
            local["ADMIN_PRINCIPALS"] = json.dumps(admins)
        os.environ.update(function_environment(template, local, [name]))
        handler = load_handler(definition.handler)
        timeout = definition.timeout_seconds if args.timeout is None else args.timeout
        context = LocalLambdaContext(name, timeout, memory_limit_in_mb=definition.memory_mb)
        say(f"{name} ({definition.handler}), {timeout:g} s timeout, request {context.aws_request_id}")
        status, result = run_handler(handler, event, context)
        answer.write(json.dumps(result) + "\n")
        answer.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    answer = sys.stdout
    # Everything the function prints (its logs, its metrics) goes where sam local invoke puts it:
    # standard error. Standard output carries the answer alone, so it can be piped to jq.
    sys.stdout = EmfTap(sys.stderr, LocalMetrics(), echo_documents=args.emf, raw_logs=args.json_logs)
    # Ctrl-C, and `kill`, cut the run short as a user expects, even where the shell started it with
    # SIGINT ignored (a background job): the function is told no time is left, and services stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return invoke(args, answer)
    except KeyboardInterrupt:  # before the function started: whatever had started is stopped by now
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
