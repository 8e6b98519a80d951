"""A local stand-in for Lambda's Invoke API, so one function's real boto3 ``lambda`` client starts another.

The fetcher hands each slot to the broadcaster with ``lambda:InvokeFunction``; locally its client finds
this endpoint through ``AWS_ENDPOINT_URL_LAMBDA`` (botocore reads it), on the local HTTP API's port:

- ``POST /2015-03-31/functions/{FunctionName}/invocations``; the name is the template's logical id
  (``BroadcasterFunction``), or a full or partial ARN ending in ``function:<name>[:qualifier]``;
- ``X-Amz-Invocation-Type: Event``: 202 at once, the handler runs on a small pool of workers (more
  events wait in its queue); an event that waited longer than the function's
  ``EventInvokeConfig.MaximumEventAgeInSeconds`` is dropped, as Lambda drops it; never retried;
- ``RequestResponse`` (the default): 200 with the handler's JSON result, or Lambda's error document
  with ``X-Amz-Function-Error: Unhandled`` when it raised or ran past its timeout;
- an unknown function: 404 ``ResourceNotFoundException``, which boto3 raises as Lambda's.

Handlers are imported at their first invocation: a function whose code is missing answers as Lambda
answers one that cannot import its handler (``Runtime.ImportModuleError``), and the rest runs.
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from local_stack.gateway import load_handler
from local_stack.lambda_context import LocalLambdaContext
from local_stack.services import say
from local_stack.template import FunctionDef, function_definition, function_properties

Reply = tuple[int, dict[str, str], bytes]
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
# "arn:aws:lambda:eu-west-1:123456789012:function:name[:qualifier]", or its "123...:function:" tail.
FUNCTION_ARN = re.compile(r"^(?:arn:[^:]+:lambda:[^:]*:)?(?:\d*:)?function:(?P<name>[^:]+)(?::[^:]+)?$")
ASYNC_WORKERS = 8
LAMBDA_DEFAULT_EVENT_AGE_S = 6 * 3600
TIMEOUT_GRACE_S = 1.0  # past its timeout, Lambda stops a function; here its answer is the timeout error


class HandlerImportError(Exception):
    error_type = "Runtime.ImportModuleError"


def lambda_error(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The document Lambda answers for a function that raised."""
    return {
        "errorMessage": str(exc),
        "errorType": getattr(exc, "error_type", type(exc).__name__),
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class LocalFunction:
    """One function: its handler imported at first use, each call with a fresh Lambda-like context."""

    def __init__(self, definition: FunctionDef, max_event_age_s: float = LAMBDA_DEFAULT_EVENT_AGE_S) -> None:
        self.definition = definition
        self.max_event_age_s = max_event_age_s
        self._handler: Callable[[Any, Any], Any] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_template(cls, template: Mapping[str, Any], logical_id: str) -> LocalFunction:
        config = function_properties(template, logical_id).get("EventInvokeConfig", {})
        age = config.get("MaximumEventAgeInSeconds", LAMBDA_DEFAULT_EVENT_AGE_S)
        return cls(function_definition(template, logical_id), float(age))

    @property
    def name(self) -> str:
        return self.definition.logical_id

    def context(self) -> LocalLambdaContext:
        definition = self.definition
        return LocalLambdaContext(
            definition.logical_id, definition.timeout_seconds, memory_limit_in_mb=definition.memory_mb
        )

    def handler(self) -> Callable[[Any, Any], Any]:
        with self._lock:  # one import, however many invocations arrive at once
            if self._handler is None:
                module = self.definition.handler.rpartition(".")[0]
                try:
                    self._handler = load_handler(self.definition.handler)
                except ImportError as exc:  # not cached: the code may be there on the next call
                    raise HandlerImportError(f"Unable to import module '{module}': {exc}") from exc
            return self._handler

    def invoke(self, event: Any, context: LocalLambdaContext | None = None) -> Any:
        return self.handler()(event, context or self.context())


def _error(status: int, error_type: str, message: str) -> Reply:
    """An AWS error botocore parses into ``client.exceptions.<error_type>``."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
    return status, headers, json.dumps({"Type": "User", "message": message}).encode()


class LocalLambdaApi:
    def __init__(
        self, functions: Iterable[LocalFunction], *, workers: int = ASYNC_WORKERS,
        report: Callable[[str], None] = say,
    ) -> None:  # fmt: skip
        self.functions = {function.name: function for function in functions}
        self._report = report
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lambda-event")
        self._queued: set[Future[None]] = set()
        self._contexts: dict[int, LocalLambdaContext] = {}  # the running events', told when stopping
        self._lock = threading.Lock()
        self._stopped = False

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> Reply | None:
        url = urlsplit(target)
        match = INVOKE_PATH.match(url.path)
        if match is None or method != "POST":
            return None
        name = unquote(match["name"])
        arn = FUNCTION_ARN.match(name)
        function = self.functions.get(arn["name"] if arn else name)
        if function is None or parse_qs(url.query).get("Qualifier", ["$LATEST"])[0] != "$LATEST":
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return _error(
                400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
            )
        kind = headers.get("x-amz-invocation-type", "RequestResponse")
        if kind == "Event":
            return self._queue(function, event)
        if kind == "DryRun":
            return 204, {}, b""
        if kind != "RequestResponse":
            return _error(400, "InvalidParameterValueException", f"Invalid InvocationType: {kind}")
        return self._call(function, event)

    def _call(self, function: LocalFunction, event: Any) -> Reply:
        context = function.context()
        outcome: dict[str, Any] = {}
        returned = threading.Event()

        def call() -> None:
            try:
                result = function.invoke(event, context)
            except Exception as exc:
                outcome["error"] = lambda_error(exc, context.aws_request_id)
            else:
                try:
                    outcome["result"] = json.dumps(result).encode()
                except (TypeError, ValueError) as exc:
                    outcome["error"] = {
                        **lambda_error(exc, context.aws_request_id),
                        "errorType": "Runtime.MarshalError",
                    }
            finally:
                returned.set()

        threading.Thread(target=call, name=function.name, daemon=True).start()
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if not returned.wait(context.timeout_s + TIMEOUT_GRACE_S):
            message = f"Task timed out after {context.timeout_s:.2f} seconds"
            outcome["error"] = {
                "errorMessage": message,
                "errorType": "Sandbox.Timedout",
                "requestId": context.aws_request_id,
            }
        if "error" in outcome:
            error = outcome["error"]
            self._report(f"{function.name} failed: {error['errorType']}: {error['errorMessage']}")
            headers["X-Amz-Function-Error"] = "Unhandled"
            return 200, headers, json.dumps(error).encode()
        return 200, headers, outcome["result"]

    def _queue(self, function: LocalFunction, event: Any) -> Reply:
        with self._lock:
            if self._stopped:
                return _error(503, "ServiceException", "the local stack is stopping")
            future = self._pool.submit(self._run_queued, function, event, time.monotonic())
            self._queued.add(future)
        future.add_done_callback(self._done)
        return 202, {"X-Amz-Executed-Version": "$LATEST"}, b""

    def _run_queued(self, function: LocalFunction, event: Any, queued: float) -> None:
        waited = time.monotonic() - queued
        if waited > function.max_event_age_s:
            self._report(
                f"{function.name}: an event dropped after {waited:.0f} s queued (MaximumEventAgeInSeconds)"
            )
            return
        context = function.context()  # its timeout counts from now, not from when the event was queued
        with self._lock:
            if self._stopped:
                return
            self._contexts[id(context)] = context
        try:
            function.invoke(event, context)
        except Exception as exc:  # as on AWS: logged, never retried (the template's MaximumRetryAttempts 0)
            kind = getattr(exc, "error_type", type(exc).__name__)
            self._report(f"{function.name} (asynchronous) failed: {kind}: {exc}")
        finally:
            with self._lock:
                self._contexts.pop(id(context), None)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._queued.discard(future)

    def stop(self, wait_s: float = 10.0) -> bool:
        """No queued event starts any more; the running ones are told no time is left and waited
        for, ``wait_s`` at most. True when every one returned."""
        with self._lock:
            self._stopped = True
            queued, contexts = list(self._queued), list(self._contexts.values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for context in contexts:
            context.cancel()
        return not wait_for_all(queued, timeout=wait_s).not_done
