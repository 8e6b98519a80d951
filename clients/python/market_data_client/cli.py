"""``market-data``: watch prices live, read them once, read a pair's history.

Exit status: 0 done (Ctrl-C included), 1 the service could not answer, 2 a bad value (an invalid or
unlisted pair, a bad option), named in the message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from market_data_client.api import DEFAULT_BASE_URL, normalise_pairs
from market_data_client.async_client import AsyncPricesClient
from market_data_client.client import PricesClient
from market_data_client.errors import (
    InvalidPairError,
    InvalidRequestError,
    MarketDataError,
    NotListedError,
    UnavailableError,
)
from market_data_client.models import candle_to_api, entry_to_api
from market_data_client.poller import DEFAULT_INTERVAL_S, poll_async
from market_data_client.state import DEFAULT_STALE_THRESHOLD_MS, PricesState
from market_data_client.stream import StreamFollower
from market_data_client.table import Screen, format_price, render
from market_data_client.tracker import Tracker

USAGE_ERROR, SERVICE_ERROR = 2, 1


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.environ.get("MARKET_DATA_URL", DEFAULT_BASE_URL),
        help=f"the HTTP API's base URL (default: $MARKET_DATA_URL, else {DEFAULT_BASE_URL})",
    )  # fmt: skip
    parser = argparse.ArgumentParser(prog="market-data", description="Prices from the market-data service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    watch = commands.add_parser("watch", parents=[common], help="a live table of prices")
    watch.add_argument("pairs", nargs="+", metavar="PAIR", help="e.g. BTC/USDT")
    watch.add_argument(
        "--stream-url", help="the WebSocket URL (default: the base URL's host, ws://.../ws; on AWS the "
        "stack's StreamUrl)",
    )  # fmt: skip
    watch.add_argument(
        "--threshold-s", type=_positive, default=DEFAULT_STALE_THRESHOLD_MS / 1000,
        help="a price older than this is shown stale, whatever the server said (default %(default)g)",
    )  # fmt: skip
    watch.add_argument("--poll", action="store_true", help="poll the HTTP API instead of the stream")
    watch.add_argument(
        "--interval-s", type=_positive, default=DEFAULT_INTERVAL_S,
        help="seconds between reads when polling (default %(default)g)",
    )  # fmt: skip

    prices = commands.add_parser("prices", parents=[common], help="the prices once")
    prices.add_argument("pairs", nargs="*", metavar="PAIR", help="default: every listed pair")
    prices.add_argument("--json", action="store_true", help="JSON instead of a table")

    history = commands.add_parser("history", parents=[common], help="a pair's candles")
    history.add_argument("pair", metavar="PAIR")
    history.add_argument("--interval", default="1m", choices=("1m", "5m", "15m", "1h"))
    history.add_argument("--limit", type=int, help="how many candles, newest last (1 to 1500)")
    history.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"market-data: {message}", file=sys.stderr)
    return code


async def _watch(args: argparse.Namespace, pairs: tuple[str, ...]) -> None:
    screen = Screen(sys.stdout)
    threshold_ms = args.threshold_s * 1000
    async with AsyncPricesClient(args.url) as client:
        states: AsyncIterator[PricesState]
        if args.poll:
            states = poll_async(client, pairs, interval_s=args.interval_s, threshold_ms=threshold_ms)
        else:
            states = aiter(
                StreamFollower(
                    pairs,
                    base_url=args.url,
                    stream_url=args.stream_url,
                    threshold_ms=threshold_ms,
                    poll_interval_s=args.interval_s,
                    client=client,
                )
            )
        async for state in states:
            screen.show(state)


def _state_json(state: PricesState) -> dict[str, Any]:
    return {
        "status": state.status,
        "staleness": {
            pair: {"ageMs": view.age_ms, "stale": view.stale, "reason": view.reason}
            for pair, view in state.pairs.items()
        },
        "prices": {pair: entry_to_api(entry) for pair, entry in state.entries.items()},
        "missingPairs": list(state.missing_pairs),
        "notListedPairs": list(state.not_listed_pairs),
        "lastServerUpdate": state.last_server_update,
        "skewMs": state.skew_ms,
    }


def _prices(args: argparse.Namespace) -> int:
    pairs = normalise_pairs(args.pairs) if args.pairs else None
    with PricesClient(args.url) as client:
        answer = client.prices(pairs)
    tracker = Tracker(pairs or tuple(answer.entries), connection="polling")
    tracker.record_answer(answer)
    state = tracker.state()
    if args.json:
        print(json.dumps(_state_json(state), indent=2))
    else:
        print("\n".join(render(state)))
    return 0


def _history(args: argparse.Namespace) -> int:
    with PricesClient(args.url) as client:
        history = client.history(args.pair, args.interval, limit=args.limit)
    if args.json:
        fallback = history.fallback
        print(json.dumps({
            "pair": history.pair, "interval": history.interval,
            "candles": [candle_to_api(candle) for candle in history.candles],
            "gaps": [list(gap) for gap in history.gaps],
            "fallback": fallback and {"interval": fallback.interval, "reason": fallback.reason},
        }, indent=2))  # fmt: skip
        return 0
    print(f"{history.pair}  {history.interval} candles: {len(history.candles)}, gaps: {len(history.gaps)}")
    if history.fallback is not None:
        print(f"answered with {history.fallback.interval} candles: {history.fallback.reason}")
    print(f"{'TIME (UTC)':<17}  {'OPEN':>12}  {'HIGH':>12}  {'LOW':>12}  {'CLOSE':>12}  SAMPLES  SOURCE")
    for candle in history.candles:
        moment = time.strftime("%Y-%m-%d %H:%M", time.gmtime(candle.time / 1000))
        figures = (candle.open, candle.high, candle.low, candle.close)
        prices = "  ".join(format_price(value).rjust(12) for value in figures)
        print(f"{moment:<17}  {prices}  {candle.samples:>7}  {candle.source}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "watch":
            pairs = normalise_pairs(args.pairs)
            try:
                asyncio.run(_watch(args, pairs))
            except KeyboardInterrupt:
                print()
            return 0
        if args.command == "prices":
            return _prices(args)
        return _history(args)
    except KeyboardInterrupt:
        return 0
    except (InvalidPairError, InvalidRequestError) as exc:
        return _fail(str(exc), USAGE_ERROR)
    except NotListedError as exc:
        return _fail(exc.message, USAGE_ERROR)
    except UnavailableError as exc:
        retry = f" (retry after {exc.retry_after_s:g} s)" if exc.retry_after_s is not None else ""
        return _fail(f"unavailable: {exc.message}{retry}", SERVICE_ERROR)
    except MarketDataError as exc:
        return _fail(str(exc), SERVICE_ERROR)
    except httpx.InvalidURL as exc:
        return _fail(f"invalid --url: {exc}", USAGE_ERROR)
    except httpx.HTTPError as exc:  # what the client's own errors do not cover (a body not decodable)
        return _fail(f"{type(exc).__name__}: {exc}", SERVICE_ERROR)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
