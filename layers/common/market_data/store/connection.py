"""The process-wide DynamoDB table, and the one error the rest of the service sees when it fails.

boto3 is imported here, lazily: the prices API needs it only when the cache is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from market_data.errors import UnavailableError, translating

if TYPE_CHECKING:
    from market_data.config import Settings


class StoreUnavailableError(UnavailableError):
    """DynamoDB could not be reached, throttled the call or failed it."""


def _dynamodb_failures() -> tuple[type[BaseException], ...]:
    # Looked up only when a call fails: by then boto3 (and with it botocore) is loaded.
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


translated = translating(_dynamodb_failures, StoreUnavailableError)

_table: Any = None


@translated  # building the resource can fail too (no region, a bad endpoint)
def get_table(settings: Settings) -> Any:
    """The process-wide Table, created on first use with explicit timeouts and bounded retries."""
    global _table
    if _table is None:
        import boto3
        from botocore.config import Config

        # Two attempts at most: a throttled or failing table must not hold a tick (or a request on
        # the cache-loss path) for seconds of backoff; callers fall back and retry next time.
        config = Config(
            connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 2, "mode": "standard"}
        )
        resource = boto3.resource("dynamodb", endpoint_url=settings.dynamodb_endpoint_url, config=config)
        _table = resource.Table(settings.market_data_table_name)
    return _table


def reset_table() -> None:
    global _table
    _table = None
