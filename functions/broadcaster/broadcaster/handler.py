"""Lambda entry point of the broadcaster: started by the fetcher (asynchronously, once per slot it
owns) with the slot's notice, or by another broadcaster with its share of a split fan-out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from broadcaster.fanout import post_all
from broadcaster.plan import Decision, SlotNotice, decide
from market_data import push, store
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.errors import UnavailableError
from market_data.observability import emit_metrics, logger, traced

SERVICE = "broadcaster"


@traced
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    try:
        table = store.get_table(settings)
        connections = store.list_connections(table, now_ms=now_ms())
        decision = Decision.from_payload(event)
        if decision is None:  # started by the fetcher: decide for every shard, then split
            decision, splits = start_splits(decide(settings, SlotNotice.from_payload(event), connections))
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


def start_splits(decision: Decision) -> tuple[Decision, int]:
    """Hand shards 1.. of a large fan-out to more broadcaster invocations; this one posts shard 0.
    Where no split can start, this invocation posts to every connection itself."""
    if decision.shards == 1:
        return decision, 0
    starter = push.get_broadcast_starter(get_settings())
    if starter is None:
        return replace(decision, shards=1), 0
    try:
        for shard in range(1, decision.shards):
            starter.start(decision.as_payload(shard))
    except push.PushUnavailableError as exc:
        logger.warning("fan-out not split; posting to every connection here", error=exc.cause)
        return replace(decision, shards=1), 0
    return decision, decision.shards - 1
