"""The store's own failures reach its callers as one error, whatever boto3 raised."""

from __future__ import annotations

import pytest


def test_a_table_that_cannot_be_built_is_the_stores_unavailable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from market_data import store
    from market_data.config import Settings

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    store.reset_table()
    try:
        with pytest.raises(store.StoreUnavailableError, match="NoRegionError"):
            store.get_table(Settings(redis_url="redis://127.0.0.1:9/0", market_data_table_name="market-data"))
    finally:
        store.reset_table()
