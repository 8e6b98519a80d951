"""Configuration: environment variables validated once, at cold start.

A bad value stops start-up with a message naming the variable and the value, instead of a
silent default that would hide the misconfiguration until prices go missing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from market_data.pairs import InvalidPairError, normalise_pair


class ConfigurationError(RuntimeError):
    """Raised at start-up when an environment variable is missing or invalid."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- freshness (source design 002's numbers) ---
    market_data_cache_ttl_ms: int = Field(15_000, ge=10_000)
    market_data_cache_stale_ttl_ms: int = Field(5_000, gt=0)
    fetch_interval_ms: int = Field(4_000, ge=2_000, le=10_000)

    # --- exchange load ---
    market_data_batch_size: int = Field(20, ge=1, le=100)
    market_data_max_concurrent_batches: int = Field(3, ge=1, le=10)
    exchange_info_refresh_ms: int = Field(300_000, ge=60_000)
    exchange_connect_timeout_s: float = Field(2.0, gt=0, le=10)
    exchange_read_timeout_s: float = Field(3.0, gt=0, le=30)
    binance_api_base_url: str = "https://api.binance.com"

    max_price_jump_ratio: float = Field(0.25, gt=0, le=10)

    # --- durable copy ---
    last_known_good_write_interval_ms: int = Field(60_000, gt=0)
    trading_pairs: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")

    # --- stores (set by the template; the local stack points them at local servers) ---
    redis_url: str
    redis_cluster: bool = False
    redis_timeout_s: float = Field(1.0, gt=0, le=10)
    # A CA bundle for a cache whose TLS certificate is not publicly trusted (a local TLS server);
    # ElastiCache's certificates verify against the system's CAs and need none.
    redis_tls_ca_file: str | None = None
    market_data_table_name: str = Field(min_length=3)
    dynamodb_endpoint_url: str | None = None

    # --- whitelist (user submissions, verified by the fetcher) ---
    whitelist_max_pending: int = Field(100, ge=1, le=10_000)
    whitelist_max_per_source_per_hour: int = Field(10, ge=1, le=10_000)
    whitelist_min_quote_volume: float = Field(0.0, ge=0)
    whitelist_recheck_ms: int = Field(300_000, ge=60_000)
    admin_token: str | None = Field(None, min_length=16)  # local stack only: the admin routes' bearer token

    # --- fetcher invocation: how long one scheduled invocation keeps ticking ---
    fetcher_run_seconds: int = Field(130, ge=10, le=900)

    @field_validator("trading_pairs", mode="before")
    @classmethod
    def _parse_trading_pairs(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f'must be a JSON list such as ["BTC/USDT","ETH/USDT"]: {exc.msg}') from None
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ValueError('must be a JSON list of strings such as ["BTC/USDT","ETH/USDT"]')
        try:
            return tuple(dict.fromkeys(normalise_pair(item) for item in value))
        except InvalidPairError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("binance_api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis:// or rediss:// (TLS)")
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
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
        return self


def load_settings() -> Settings:
    """Read and validate the environment, turning pydantic's report into one readable message."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "configuration"
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            problems.append(f"{name}: {error['msg']}{shown}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated on first use (cold start)."""
    return load_settings()
