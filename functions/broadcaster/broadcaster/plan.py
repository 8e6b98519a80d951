"""What one slot tells the connections, decided once per slot by the invocation the fetcher
started: which pairs changed, which 1-minute candles closed, whether the status changed, whether
heartbeats are due, and how many invocations share the posting. Split invocations receive the
decision and only post."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from market_data import cache, store
from market_data.candles import MINUTE_MS, bucket
from market_data.clock import now_ms
from market_data.config import Settings
from market_data.observability import logger
from market_data.prices import read_prices
from market_data.stream import HEARTBEAT_EVERY_MS


@dataclass(frozen=True)
class SlotNotice:
    """What the fetcher hands the broadcaster for a slot it owned (its invocation payload)."""

    slot: int
    slot_ms: int  # the slot's start, ms
    pairs: tuple[str, ...]  # the pairs whose prices the slot wrote
    status: str  # ok, degraded or down
    reason: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SlotNotice:
        return cls(
            int(payload["slot"]), int(payload["slotMs"]), tuple(payload.get("pairs") or ()),
            str(payload.get("status") or "ok"), str(payload.get("reason") or ""),
        )  # fmt: skip

    def as_payload(self) -> dict[str, Any]:
        return {
            "slot": self.slot, "slotMs": self.slot_ms, "pairs": list(self.pairs),
            "status": self.status, "reason": self.reason,
        }  # fmt: skip


@dataclass(frozen=True)
class Decision:
    notice: SlotNotice
    entries: dict[str, dict[str, object]]  # the changed pairs' entries, as the prices route serves them
    tell_status: bool
    heartbeat: bool
    shards: int = 1
    shard: int = 0
    connections: int = 0  # registered connections, all shards together
    # pair -> its 1-minute candles closed since the last push (the API's fields), oldest first
    candles: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    def as_payload(self, shard: int, assigned: list[store.Connection] | None = None) -> dict[str, Any]:
        """A split's payload; with ``assigned``, its connections too, so that it need not read
        the registry again (each split reading all of it made registry reads grow with the
        square of the connections)."""
        decided: dict[str, Any] = {
            "entries": self.entries, "tellStatus": self.tell_status, "heartbeat": self.heartbeat,
            "shards": self.shards, "shard": shard, "connections": self.connections, "candles": self.candles,
        }  # fmt: skip
        if assigned is not None:
            decided["assigned"] = [
                [c.connection_id, c.connected_at, list(c.pairs), list(c.candle_pairs)] for c in assigned
            ]
        return {**self.notice.as_payload(), "decided": decided}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Decision | None:
        decided = payload.get("decided")
        if not decided:
            return None
        return cls(
            SlotNotice.from_payload(payload), dict(decided["entries"]), bool(decided["tellStatus"]),
            bool(decided["heartbeat"]), int(decided["shards"]), int(decided["shard"]),
            int(decided["connections"]), dict(decided.get("candles") or {}),
        )  # fmt: skip


def assigned_connections(payload: dict[str, Any]) -> list[store.Connection] | None:
    """The connections a split was handed, or None when it was handed none (it reads the registry)."""
    assigned = (payload.get("decided") or {}).get("assigned")
    if assigned is None:
        return None
    return [
        store.Connection(str(i), int(at), tuple(pairs), tuple(candles)) for i, at, pairs, candles in assigned
    ]


def in_shard(connection_id: str, shard: int, shards: int) -> bool:
    """The same split in every invocation: a stable hash, never Python's per-process one."""
    return zlib.crc32(connection_id.encode()) % shards == shard


def fingerprint(entry: dict[str, object]) -> str:
    """What makes an entry worth pushing again: a newer exchange time, a new price, or a change
    of freshness or source (a client's stale flag follows the server's)."""
    return f"{entry['timestamp']}|{entry['price']}|{entry['stale']}|{entry['source']}"


def decide(settings: Settings, notice: SlotNotice, connections: list[store.Connection]) -> Decision:
    table = store.get_table(settings)
    wanted = sorted({pair for c in connections for pair in c.pairs} & set(notice.pairs))
    entries: dict[str, dict[str, object]] = {}
    if wanted:
        answer = read_prices(wanted, settings=settings, now=now_ms())
        fingerprints = {pair: fingerprint(entry) for pair, entry in answer.entries.items()}
        try:
            changed = cache.changed_since_pushed(cache.get_client(settings), fingerprints)
        except cache.CacheUnavailableError as exc:
            logger.warning("push memory unreachable: every entry counts as changed", error=exc.cause)
            changed = list(fingerprints)
        entries = {pair: answer.entries[pair] for pair in changed}
    told = store.get_stream_state(table)
    tell_status = (notice.status, notice.reason) != (told.status, told.reason) and store.claim_status(
        table, notice.status, notice.reason, told=told
    )
    every_slots = max(1, HEARTBEAT_EVERY_MS // settings.fetch_interval_ms - 1)  # a slot early, never late
    # A round is claimed only when one is due: a failed conditional write costs a write unit too.
    due = notice.slot - told.heartbeat_slot >= every_slots
    heartbeat = due and store.claim_heartbeat(table, notice.slot, every_slots=every_slots)
    shards = max(1, -(-len(connections) // settings.broadcast_connections_per_invocation))
    candles = closed_candles(settings, notice, connections)
    return Decision(notice, entries, tell_status, heartbeat, shards, 0, len(connections), candles)


CANDLE_CATCH_UP_MS = 5 * MINUTE_MS  # after a pause, the minutes of candles still worth pushing


def closed_candles(
    settings: Settings, notice: SlotNotice, connections: list[store.Connection]
) -> dict[str, list[dict[str, object]]]:
    """The candle subscribers' 1-minute candles closed since the last push: the fetcher's candle
    consumer closed them before it started this broadcaster. Pushed once per minute however many
    broadcasters run (the push memory advances in one server-side step)."""
    wanted = sorted({pair for c in connections for pair in c.candle_pairs})
    closed_minute = bucket(notice.slot_ms, MINUTE_MS) - MINUTE_MS
    if not wanted:
        return {}
    try:
        client = cache.get_client(settings)
        previous = cache.advance_candle_minute(client, closed_minute)
        if previous is None:
            return {}
        start = max(previous + MINUTE_MS, closed_minute - CANDLE_CATCH_UP_MS) if previous else closed_minute
        found = cache.read_minutes(client, wanted, start, closed_minute + MINUTE_MS)
    except cache.CacheUnavailableError as exc:
        logger.warning("closed candles unreadable; not pushed", error=exc.cause)
        return {}
    candles: dict[str, list[dict[str, object]]] = {}
    for pair, (closed, still_open) in found.items():
        each = [orjson.loads(raw) for raw in closed] + ([still_open.as_api()] if still_open else [])
        if each:
            candles[pair] = each
    return candles
