"""Lambda entry point of the fetcher: builds its collaborators once, then runs the slot loop."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from fetcher.deps import Fetcher, build_fetcher
from fetcher.loop import run_fetcher
from market_data.config import get_settings
from market_data.observability import logger, traced

_fetcher: Fetcher | None = None
FLUSH_TIMEOUT_S = 1.0  # within the 2 s the loop leaves before the timeout


def get_fetcher() -> Fetcher:
    global _fetcher
    if _fetcher is None:
        _fetcher = build_fetcher(get_settings())
    return _fetcher


@traced
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    fetcher = get_fetcher()
    summary = run_fetcher(
        fetcher,
        invocation_id=context.aws_request_id,
        remaining_ms=context.get_remaining_time_in_millis,
        run_seconds=fetcher.deps.settings.fetcher_run_seconds,
    )
    for flush in fetcher.deps.flushers:
        try:
            flush(FLUSH_TIMEOUT_S)
        except Exception:  # a late start must not fail the invocation
            logger.exception("handed-over work not finished before returning")
    return summary.as_dict()
