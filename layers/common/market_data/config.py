"""Configuration: environment variables validated once, at cold start.

A bad value stops start-up with a message naming the variable and the value, instead of a
silent default that would hide the misconfiguration until prices go missing.

The settings are a msgspec ``Struct``: the same declarative types and bounds a pydantic-settings
class would carry, at a fraction of the import cost. The prices function reads settings on every
cold start, and pydantic-settings alone cost it about as much as importing redis (see the README's
benchmarks); msgspec costs a tenth of that.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from market_data.errors import InvalidPairError
from market_data.pairs import normalise_pair


class ConfigurationError(RuntimeError):
    """Raised at start-up when an environment variable is missing or invalid."""


DEFAULT_EXCHANGES = ("binance", "coinbase", "kraken")
# An exchange's name in EXCHANGES and in its <NAME>_API_BASE_URL variable. Which names exist is the
# fetcher's registry's business (fetcher/exchanges/registry.py): it refuses an unknown one at start.
EXCHANGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BASE_URL_SUFFIX = "_API_BASE_URL"


DEFAULT_FETCH_INTERVAL_MS = 4_000


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """One field per environment variable (the field name in upper case)."""

    # --- freshness (source design 002's numbers) ---
    market_data_cache_ttl_ms: Annotated[int, Meta(ge=10_000)] = 15_000
    market_data_cache_stale_ttl_ms: Annotated[int, Meta(gt=0)] = 5_000
    fetch_interval_ms: Annotated[int, Meta(ge=2_000, le=10_000)] = DEFAULT_FETCH_INTERVAL_MS

    # --- exchange load ---
    market_data_batch_size: Annotated[int, Meta(ge=1, le=100)] = 20
    market_data_max_concurrent_batches: Annotated[int, Meta(ge=1, le=10)] = 3
    exchange_info_refresh_ms: Annotated[int, Meta(ge=60_000)] = 300_000
    # While a pair is suspended or a name refused, listings are read this often, so a pair listed
    # again is served again within it (and a stale name costs one bisection per read, at most).
    listing_watch_ms: Annotated[int, Meta(ge=2_000, le=3_600_000)] = 60_000
    exchange_connect_timeout_s: Annotated[float, Meta(gt=0, le=10)] = 2.0
    exchange_read_timeout_s: Annotated[float, Meta(gt=0, le=30)] = 3.0
    # Where prices come from: each pair is served by the first of these whose own listing trades it.
    exchanges: tuple[str, ...] = DEFAULT_EXCHANGES
    # <NAME>_API_BASE_URL variables: an exchange's base where it is not the exchange's own API
    # (a simulator, a mirror). Read from every such variable; see ``exchange_base_url``.
    exchange_base_urls: dict[str, str] = msgspec.field(default_factory=dict)

    max_price_jump_ratio: Annotated[float, Meta(gt=0, le=10)] = 0.25

    # --- durable copy ---
    last_known_good_write_interval_ms: Annotated[int, Meta(gt=0)] = 60_000
    trading_pairs: tuple[str, ...] = ("BTC/USD", "BTC/USDT", "ETH/USD", "ETH/USDT")

    # --- stores (set by the template; the local stack points them at local servers) ---
    redis_url: str
    redis_cluster: bool = False
    redis_timeout_s: Annotated[float, Meta(gt=0, le=10)] = 1.0
    # A CA bundle for a cache whose TLS certificate is not publicly trusted (a local TLS server);
    # ElastiCache's certificates verify against the system's CAs and need none.
    redis_tls_ca_file: str | None = None
    market_data_table_name: Annotated[str, Meta(min_length=3)]
    dynamodb_endpoint_url: str | None = None

    # --- whitelist (user submissions, verified by the fetcher) ---
    whitelist_max_pending: Annotated[int, Meta(ge=1, le=10_000)] = 100
    whitelist_max_per_source_per_hour: Annotated[int, Meta(ge=1, le=10_000)] = 10
    # In the pair's quote currency: $10,000 a day for USD and USDT pairs. A pair trading less is
    # refused as illiquid (its price would be one trade's, and easy to move).
    whitelist_min_quote_volume: Annotated[float, Meta(ge=0)] = 10_000.0
    # Pairs served (active and suspended) at most: what one prices request can name, and what one
    # slot fetches in 5 Binance batches (see docs/configuration.md for the arithmetic).
    whitelist_max_active: Annotated[int, Meta(ge=1, le=1_000)] = 100
    whitelist_recheck_ms: Annotated[int, Meta(ge=60_000)] = 300_000
    # A pending pair not verified within this long is rejected, with the reason (its ticker never
    # validated, its exchanges' listings unreadable): pending must not fill up with pairs that never will.
    whitelist_pending_expiry_ms: Annotated[int, Meta(ge=60_000, le=86_400_000)] = 300_000
    # IAM principals allowed on the admin routes (ARNs; a role's admits any session of it). None
    # named: the admin routes refuse everyone. IAM at the API only says "may invoke the API".
    admin_principals: tuple[str, ...] = ()
    # Local stack only: the admin routes' bearer token.
    admin_token: Annotated[str, Meta(min_length=16)] | None = None
    # Set by the template when the CloudFront distribution is on: a request carrying it in
    # X-Origin-Verify came through the distribution, so its CloudFront-Viewer-Address is the client's.
    cdn_origin_secret: str = ""

    # --- fetcher invocation: how long one scheduled invocation keeps ticking ---
    fetcher_run_seconds: Annotated[int, Meta(ge=10, le=900)] = 130

    # --- push over WebSocket (set by the template; the local stack points them at itself) ---
    # The WebSocket API's management endpoint (https://<api>.execute-api.<region>.amazonaws.com/<stage>).
    stream_management_url: str | None = None
    # The WebSocket URL the live page connects to (the stack's wss://<api>.execute-api...); unset:
    # the page's own host at /ws, as the local stack serves it.
    stream_url: Annotated[str, Meta(pattern=r"^wss?://[^\s/]+(/\S*)?$")] | None = None
    # The broadcaster the fetcher hands each slot to; unset: nothing is pushed (no WebSocket API).
    broadcaster_function_name: str | None = None
    # Posts in flight per broadcaster invocation, and connections one invocation serves before the
    # fan-out is split over more of itself. Posting is CPU-bound (about 0.43 ms a post): at the
    # broadcaster's 1,769 MB (one vCPU) an invocation posts about 2,400 a second, so 500 end within
    # about 250 ms; 48 in flight cover a 20 ms round trip at that rate
    # (docs/benchmarks.md#push-over-websocket).
    broadcast_concurrency: Annotated[int, Meta(ge=1, le=256)] = 48
    broadcast_connections_per_invocation: Annotated[int, Meta(ge=10, le=100_000)] = 500

    # --- price history ---
    # A newly active pair's last day of 1-minute candles and 90 days of hourly ones, once, from its
    # exchange's candle endpoint, paced within what the tick leaves of the exchange's rate.
    candle_backfill: bool = True

    def __post_init__(self) -> None:
        if not self.fetch_interval_ms < self.market_data_cache_stale_ttl_ms < self.market_data_cache_ttl_ms:
            raise ValueError(
                "MARKET_DATA_CACHE_STALE_TTL_MS must be greater than FETCH_INTERVAL_MS and less than "
                f"MARKET_DATA_CACHE_TTL_MS (got stale={self.market_data_cache_stale_ttl_ms}, "
                f"interval={self.fetch_interval_ms}, ttl={self.market_data_cache_ttl_ms})"
            )
        if self.last_known_good_write_interval_ms < self.fetch_interval_ms:
            raise ValueError(
                "LAST_KNOWN_GOOD_WRITE_INTERVAL_MS must be >= FETCH_INTERVAL_MS "
                f"(got {self.last_known_good_write_interval_ms} < {self.fetch_interval_ms})"
            )


def _trading_pairs(value: str) -> tuple[str, ...]:
    try:
        pairs = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f'must be a JSON list such as ["BTC/USDT","ETH/USDT"]: {exc.msg}') from None
    if not isinstance(pairs, list) or not all(isinstance(item, str) for item in pairs):
        raise ValueError('must be a JSON list of strings such as ["BTC/USDT","ETH/USDT"]')
    try:
        return tuple(dict.fromkeys(normalise_pair(item) for item in pairs))
    except InvalidPairError as exc:
        raise ValueError(str(exc)) from None


def _json_strings(value: str, *, expected: str) -> list[str]:
    """A JSON list of strings, or the error that says what was ``expected``."""
    try:
        items = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{expected}: {exc.msg}") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(expected)
    return items


def _exchanges(value: str) -> tuple[str, ...]:
    example = '["binance","coinbase","kraken"]'
    expected = f"must be a non-empty JSON list of exchange names such as {example}"
    names = _json_strings(value, expected=expected)
    if not names:
        raise ValueError(expected)
    malformed = [name for name in names if not EXCHANGE_NAME.fullmatch(name.strip().lower())]
    if malformed:
        raise ValueError(f"exchange name {malformed[0]!r} is not a name such as binance or binance_us")
    return tuple(dict.fromkeys(name.strip().lower() for name in names))  # order kept, repeats dropped


def _admin_principals(value: str) -> tuple[str, ...]:
    """A JSON list of ARNs, or ARNs separated by commas (a CloudFormation list joined); may be empty."""
    text = value.strip()
    if text.startswith("["):
        names = _json_strings(text, expected="must be a JSON list of IAM ARNs")
    else:
        names = text.split(",") if text else []
    arns = tuple(name.strip() for name in names if name.strip())
    bad = [arn for arn in arns if not ARN.fullmatch(arn)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an IAM user, role or assumed-role ARN")
    return arns


ARN = re.compile(
    r"^arn:aws[a-z-]*:(iam::\d{12}:(user|role)/[\w+=,.@/-]+|sts::\d{12}:assumed-role/[\w+=,.@-]+/[\w+=,.@-]+)$"
)


def _http_base_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


def _redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis:// or rediss:// (TLS)")
    return value


# The words pydantic-settings took for booleans, so that no deployed value changes meaning.
TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})


def _base_type(annotation: Any) -> Any:
    """``int`` for ``Annotated[int, Meta(...)]``, ``str`` for ``str | None``, and so on."""
    if get_origin(annotation) is Annotated:
        return _base_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return _base_type(next(arg for arg in get_args(annotation) if arg is not type(None)))
    return annotation


def _scalar(text: str, annotation: Any) -> Any:
    """The environment's text as the field's scalar type; bounds are checked after, by msgspec."""
    base = _base_type(annotation)
    stripped = text.strip()
    if base is bool:
        if stripped.lower() in TRUE_WORDS:
            return True
        if stripped.lower() in FALSE_WORDS:
            return False
        raise ValueError("expected true or false")
    if base is int:
        try:
            return int(stripped)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if base is float:
        try:
            return float(stripped)
        except ValueError:
            raise ValueError("expected a number") from None
    return text


# Variables whose value is a secret: a problem with one names it, never prints it.
SECRETS = frozenset({"admin_token"})

# Variables whose text needs more than a type and bounds: parsed (and checked) before conversion.
PARSERS: dict[str, Callable[[str], Any]] = {
    "trading_pairs": _trading_pairs,
    "exchanges": _exchanges,
    "admin_principals": _admin_principals,
    "redis_url": _redis_url,
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment; every problem is named in one message."""
    given = {name.lower(): value for name, value in (os.environ if environ is None else environ).items()}
    values: dict[str, Any] = {}
    problems: list[str] = []
    base_urls: dict[str, str] = {}
    for name, text in given.items():
        exchange = name.upper().removesuffix(BASE_URL_SUFFIX).lower()
        if name.upper().endswith(BASE_URL_SUFFIX) and EXCHANGE_NAME.fullmatch(exchange):
            try:
                base_urls[exchange] = _http_base_url(text)
            except ValueError as exc:
                problems.append(f"{name.upper()}: {exc} (got {text!r})")
    values["exchange_base_urls"] = base_urls
    for field in msgspec.structs.fields(Settings):
        variable = field.name.upper()
        if field.name == "exchange_base_urls":
            continue
        if field.name not in given:
            if field.required:
                problems.append(f"{variable}: required")
            continue
        text = given[field.name]
        try:
            parsed = PARSERS[field.name](text) if field.name in PARSERS else _scalar(text, field.type)
            values[field.name] = msgspec.convert(parsed, field.type)  # the type's bounds
        except (ValueError, msgspec.ValidationError) as exc:
            got = f"a value of {len(text)} characters" if field.name in SECRETS else repr(text)
            problems.append(f"{variable}: {exc} (got {got})")
    if problems:
        raise ConfigurationError("invalid configuration: " + "; ".join(problems))
    _freshness_follows_the_interval(values)
    try:
        return Settings(**values)
    except ValueError as exc:  # the relations between settings
        raise ConfigurationError(f"invalid configuration: {exc}") from None


def _freshness_follows_the_interval(values: dict[str, Any]) -> None:
    """The stale threshold and cache TTL, when not set, follow FETCH_INTERVAL_MS: the design's
    5 s and 15 s at 4 s slots, one second past a slot and three slots at longer ones. So every
    interval the settings (and the template's parameter) allow starts, instead of only those
    below a fixed 5 s threshold."""
    interval = values.get("fetch_interval_ms", DEFAULT_FETCH_INTERVAL_MS)
    values.setdefault("market_data_cache_stale_ttl_ms", max(5_000, interval + 1_000))
    values.setdefault("market_data_cache_ttl_ms", max(15_000, 3 * interval))


def exchange_base_url(settings: Settings, exchange: str, default: str) -> str:
    """``exchange``'s base URL: its <NAME>_API_BASE_URL variable, else ``default`` (its own API)."""
    return settings.exchange_base_urls.get(exchange, default)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated on first use (cold start)."""
    return load_settings()
