"""Lambda entry point of the broadcaster: started by the fetcher (asynchronously, once per slot it
owns) with the slot's notice, or by another broadcaster with its share of a split fan-out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from aws_lambda_powertools.utilities.typing import LambdaContext

from broadcaster.fanout import post_all
from broadcaster.plan import Decision, SlotNotice, assigned_connections, decide, in_shard
from market_data import push, store
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.errors import UnavailableError
from market_data.observability import emit_metrics, logger, traced

SERVICE = "broadcaster"
# Lambda takes an asynchronous invocation's payload up to 256 KB: a split whose connections would
# not fit under this is handed none and reads the registry itself.
MAX_SPLIT_PAYLOAD_BYTES = 200_000


@traced
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    try:
        decision = Decision.from_payload(event)
        connections = assigned_connections(event) if decision is not None else None
        if connections is None:
            connections = store.list_connections(store.get_table(settings), now_ms=now_ms())
        if decision is None:  # started by the fetcher: decide for every shard, then split
            decided = decide(settings, SlotNotice.from_payload(event), connections)
            decision, splits = start_splits(decided, connections)
        else:
            splits = 0
        result = post_all(settings, decision, connections)
    except UnavailableError as exc:
        logger.warning("fan-out failed; the next slot's supersedes it", error=exc.cause)
        return {"sent": 0, "error": str(exc)}
    result.splits = splits
    lag_ms = now_ms() - decision.notice.slot_ms
    emit_metrics(
        SERVICE,
        {
            "StreamConnections": result.connections,
            "StreamMessagesSent": result.sent,
            "StreamPostsFailed": result.failed,
            "StreamConnectionsGone": len(result.gone),
            "StreamFanOutDuration": round(result.duration_ms, 1),
            "StreamFanOutLag": lag_ms,
            "StreamFanOutSplits": splits,
        },
        metadata={"slot": decision.notice.slot, "shard": decision.shard, "shards": decision.shards},
    )
    return {
        "slot": decision.notice.slot, "connections": result.connections, "sent": result.sent,
        "failed": result.failed, "gone": len(result.gone), "shard": decision.shard, "shards": decision.shards,
    }  # fmt: skip


def start_splits(decision: Decision, connections: list[store.Connection]) -> tuple[Decision, int]:
    """Hand shards 1.. of a large fan-out to more broadcaster invocations, each with its
    connections; this one posts shard 0. Where no split can start, this invocation posts to every
    connection itself."""
    if decision.shards == 1:
        return decision, 0
    starter = push.get_broadcast_starter(get_settings())
    if starter is None:
        return replace(decision, shards=1), 0
    try:
        for shard in range(1, decision.shards):
            assigned = [c for c in connections if in_shard(c.connection_id, shard, decision.shards)]
            payload = decision.as_payload(shard, assigned)
            if len(orjson.dumps(payload)) > MAX_SPLIT_PAYLOAD_BYTES:
                payload = decision.as_payload(shard)
            starter.start(payload)
    except push.PushUnavailableError as exc:
        logger.warning("fan-out not split; posting to every connection here", error=exc.cause)
        return replace(decision, shards=1), 0
    return decision, decision.shards - 1
