"""The ``pairs`` query parameter: normalised, deduplicated, bounded; errors name the bad value."""

from __future__ import annotations

import pytest

from market_data.pairs import InvalidPairError, parse_pairs_param


def test_left_out_means_every_listed_pair() -> None:
    assert parse_pairs_param(None) is None


def test_lower_case_is_normalised_and_duplicates_collapse_in_order() -> None:
    assert parse_pairs_param("eth/usdt,BTC/USDT,ETH/USDT") == ("ETH/USDT", "BTC/USDT")


def test_empty_entries_are_ignored() -> None:
    assert parse_pairs_param(",BTC/USDT,, ,") == ("BTC/USDT",)


@pytest.mark.parametrize("raw", ["", ",", " , "])
def test_nothing_left_is_an_error(raw: str) -> None:
    with pytest.raises(InvalidPairError, match="no pair"):
        parse_pairs_param(raw)


@pytest.mark.parametrize("bad", ["BTCUSDT", "BTC/", "BTC-USDT", "BTC/US$T", "A" * 21 + "/USDT", "BTC/USDT/X"])
def test_malformed_pair_is_named(bad: str) -> None:
    with pytest.raises(InvalidPairError) as raised:
        parse_pairs_param(f"ETH/USDT,{bad}")
    assert repr(bad) in str(raised.value)


def test_more_than_100_pairs_is_refused() -> None:
    raw = ",".join(f"C{i}/USDT" for i in range(101))
    with pytest.raises(InvalidPairError, match="101"):
        parse_pairs_param(raw)
    assert len(parse_pairs_param(",".join(f"C{i}/USDT" for i in range(100))) or ()) == 100
