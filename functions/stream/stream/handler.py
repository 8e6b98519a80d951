"""Lambda entry point of the WebSocket API: $connect, messages and $disconnect, by event type.

A message's answer (snapshot, error, heartbeat) is posted through the management API rather than
returned: API Gateway sends a route's return value only with a route response configured.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.errors import UnavailableError
from market_data.observability import logger, traced
from stream import subscriptions

OK = {"statusCode": 200}


@traced
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event["requestContext"]
    kind, connection_id = request.get("eventType"), request["connectionId"]
    settings = get_settings()
    logger.set_correlation_id(request.get("requestId"))
    try:
        if kind == "CONNECT":
            subscriptions.connect(
                settings, connection_id, connected_at=int(request.get("connectedAt") or now_ms())
            )
        elif kind == "DISCONNECT":
            subscriptions.disconnect(settings, connection_id)
        else:
            answered = subscriptions.handle_message(
                settings,
                connection_id,
                event.get("body"),
                connected_at=int(request.get("connectedAt") or now_ms()),
            )
            logger.debug("message answered", connection_id=connection_id, answer=answered)
    except UnavailableError as exc:
        # $connect refused: the client retries later. A message unanswered: the client's next
        # subscription, or the broadcaster's next update, makes up for it.
        logger.warning("stream request failed", event_type=kind, error=exc.cause)
        return {"statusCode": 503}
    return OK
