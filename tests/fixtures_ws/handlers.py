"""Handlers standing in for the template's stream and broadcaster functions in the local WebSocket
API's tests: they record every event and answer through the real boto3 management API client, at
``STREAM_MANAGEMENT_URL`` as the real functions find it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

EVENTS: list[dict[str, Any]] = []
_recorded = threading.Condition()


def management() -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=os.environ["STREAM_MANAGEMENT_URL"],
        region_name="eu-west-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(max_pool_connections=50, retries={"max_attempts": 1}),
    )


def recorded(matches: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0) -> dict[str, Any]:
    """The first recorded event ``matches`` accepts, waiting for it ``timeout_s`` at most."""
    with _recorded:
        found = _recorded.wait_for(lambda: next((e for e in EVENTS if matches(e)), None), timeout_s)
    if found is None:
        raise AssertionError(f"no such event within {timeout_s} s; recorded: {EVENTS}")
    return found


def events_of(connection_id: str) -> list[dict[str, Any]]:
    with _recorded:
        return [e for e in EVENTS if e["requestContext"]["connectionId"] == connection_id]


def stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect refuses ?refuse=<status>; the "echo" route posts the body back; "boom" raises;
    $default answers a body that API Gateway does not send."""
    assert context.get_remaining_time_in_millis() > 0
    with _recorded:
        EVENTS.append(event)
        _recorded.notify_all()
    request = event["requestContext"]
    refuse = (event.get("queryStringParameters") or {}).get("refuse")
    if request["eventType"] == "CONNECT" and refuse:
        return {"statusCode": int(refuse), "body": json.dumps({"message": "refused by the test"})}
    if request["routeKey"] == "echo":
        management().post_to_connection(
            ConnectionId=request["connectionId"], Data=f"echo:{event['body']}".encode()
        )
    if request["routeKey"] == "boom":
        raise RuntimeError("the test's route failed")
    return {"statusCode": 200, "body": "a $default answer API Gateway does not send"}


def broadcast(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Posts ``message`` to each of ``connections`` from a thread pool, as a broadcaster does; the
    ids that are gone are returned (a real broadcaster forgets them)."""
    client = management()

    def post(connection_id: str) -> str | None:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=event["message"].encode())
        except client.exceptions.GoneException:
            return connection_id
        return None

    with ThreadPoolExecutor(8) as pool:
        gone = [c for c in pool.map(post, event["connections"]) if c is not None]
    result = {
        "posted": len(event["connections"]) - len(gone),
        "gone": gone,
        "function": context.function_name,
    }
    with _recorded:
        EVENTS.append({"requestContext": {"connectionId": "", "eventType": "BROADCAST"}, "result": result})
        _recorded.notify_all()
    return result


def fail(event: dict[str, Any], context: Any) -> None:
    raise ValueError(f"refusing {event}")
