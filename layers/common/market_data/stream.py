"""The WebSocket messages, both ways (docs/api.md#websocket). Every message is one JSON object;
a client's bad message gets an error naming the bad value, and its connection stays open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from market_data.errors import InvalidPairError
from market_data.pairs import normalise_pair

MAX_PAIRS_PER_CONNECTION = 100  # as many as one prices request may name
ACTIONS = ("subscribe", "unsubscribe", "ping")
CANDLE_INTERVALS = ("1m",)  # what a subscription's "candles" may ask for
OK, DEGRADED, DOWN = "ok", "degraded", "down"
# A heartbeat at least this often when nothing else was sent, so a quiet market is told apart
# from a dead connection (and API Gateway's 10-minute idle timeout never closes a connection).
HEARTBEAT_EVERY_MS = 30_000


class StreamMessageError(ValueError):
    """A client message this service cannot act on; ``code`` is the error's name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientMessage:
    action: str  # subscribe, unsubscribe or ping
    pairs: tuple[str, ...] = ()
    candles: str | None = None  # a subscription's candle interval: each candle is pushed as it closes


def parse_client_message(body: str | None) -> ClientMessage:
    """The client's message, or ``StreamMessageError`` naming what is wrong with it."""
    try:
        message = orjson.loads(body or "")
    except orjson.JSONDecodeError:
        shown = (body or "")[:80]
        raise StreamMessageError("malformed_json", f"not a JSON object: {shown!r}") from None
    if not isinstance(message, dict):
        raise StreamMessageError("malformed_json", f"not a JSON object: {str(message)[:80]!r}")
    action = message.get("action")
    if action not in ACTIONS:
        raise StreamMessageError(
            "unknown_action", f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}"
        )
    if action == "ping":
        return ClientMessage("ping")
    raw = message.get("pairs")
    if not isinstance(raw, list) or not raw or not all(isinstance(pair, str) for pair in raw):
        raise StreamMessageError(
            "invalid_pairs", f'invalid pairs {raw!r}: expected a list such as ["BTC/USDT", "ETH/USDT"]'
        )
    try:
        pairs = tuple(dict.fromkeys(normalise_pair(pair) for pair in raw))
    except InvalidPairError as exc:
        raise StreamMessageError("invalid_pairs", str(exc)) from None
    if len(pairs) > MAX_PAIRS_PER_CONNECTION:
        raise StreamMessageError(
            "too_many_pairs",
            f"too many pairs: {len(pairs)}, at most {MAX_PAIRS_PER_CONNECTION} per connection",
        )
    candles = message.get("candles")
    if action == "subscribe" and candles is not None and candles not in CANDLE_INTERVALS:
        raise StreamMessageError(
            "invalid_candles", f"invalid candles {candles!r}: expected {' or '.join(CANDLE_INTERVALS)}"
        )
    return ClientMessage(action, pairs, candles if action == "subscribe" else None)


def _dumps(message: Mapping[str, Any]) -> bytes:
    return orjson.dumps(message)


def error_message(code: str, message: str) -> bytes:
    return _dumps({"type": "error", "error": code, "message": message})


def snapshot_message(prices: Mapping[str, Any], missing: Sequence[str], *, status: str, reason: str) -> bytes:
    return _dumps(
        {"type": "snapshot", "prices": prices, "missing": list(missing), "status": status, "reason": reason}
    )


def update_message(slot_ms: int, prices: Mapping[str, Any]) -> bytes:
    return _dumps({"type": "update", "slot": slot_ms, "prices": prices})


def candle_message(pair: str, candle: Mapping[str, Any]) -> bytes:
    return _dumps({"type": "candle", "pair": pair, "candle": candle})


def status_message(status: str, reason: str) -> bytes:
    return _dumps({"type": "status", "status": status, "reason": reason})


def heartbeat_message(at_ms: int) -> bytes:
    return _dumps({"type": "heartbeat", "at": at_ms})


def snapshot_status(told: str, told_reason: str, *, stale: int, missing: int, asked: int) -> tuple[str, str]:
    """The status a snapshot carries: what every connection was last told, unless this
    connection's own pairs say worse (stale or missing prices are never shown as ``ok``)."""
    if asked and missing == asked:
        return DOWN if told == DOWN else DEGRADED, told_reason or "no price available yet for these pairs"
    if (stale or missing) and told in ("", OK):
        return DEGRADED, f"{stale + missing} of {asked} pairs stale or missing"
    return told or OK, told_reason
