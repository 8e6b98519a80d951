"""Configuration is validated once: a bad value stops start-up with a message naming it."""

from __future__ import annotations

import pytest

from fetcher.deps import build_fetcher
from fetcher.exchanges.registry import REGISTRY
from market_data.config import ConfigurationError, exchange_base_url, load_settings

REQUIRED = {"REDIS_URL": "redis://127.0.0.1:6379/0", "MARKET_DATA_TABLE_NAME": "market-data"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_are_the_designs(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.market_data_cache_ttl_ms == 15_000
    assert settings.market_data_cache_stale_ttl_ms == 5_000
    assert settings.fetch_interval_ms == 4_000
    assert settings.market_data_batch_size == 20
    assert settings.market_data_max_concurrent_batches == 3
    assert settings.last_known_good_write_interval_ms == 60_000
    assert settings.trading_pairs == ("BTC/USD", "BTC/USDT", "ETH/USD", "ETH/USDT")
    assert settings.exchanges == ("binance", "coinbase", "kraken")
    # Each exchange's own API unless its <NAME>_API_BASE_URL says otherwise.
    assert settings.exchange_base_urls == {}
    assert {name: exchange_base_url(settings, name, spec.base_url) for name, spec in REGISTRY.items()} == {
        "binance": "https://api.binance.com",
        "binance_us": "https://api.binance.us",
        "coinbase": "https://api.exchange.coinbase.com",
        "kraken": "https://api.kraken.com",
    }


def test_exchanges_keep_their_order_and_each_has_its_base_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXCHANGES", '["Kraken", "binance_us", "kraken"]')
    env.setenv("BINANCE_US_API_BASE_URL", "http://127.0.0.1:8080/")
    settings = load_settings()
    assert settings.exchanges == ("kraken", "binance_us")  # the order is the preference
    assert exchange_base_url(settings, "binance_us", "https://api.binance.us") == "http://127.0.0.1:8080"


def test_an_unknown_exchange_stops_the_fetcher_at_start_up_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXCHANGES", '["binance","bitstamp"]')
    settings = load_settings()  # a name like any other to the functions that only report on it
    with pytest.raises(ConfigurationError) as caught:
        build_fetcher(settings)
    message = str(caught.value)
    assert "EXCHANGES" in message and "unknown exchange 'bitstamp'" in message and "binance_us" in message


def test_a_bad_base_url_is_named_at_start_up(env: pytest.MonkeyPatch) -> None:
    env.setenv("KRAKEN_API_BASE_URL", "ftp://kraken.example")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "KRAKEN_API_BASE_URL" in str(caught.value) and "ftp://kraken.example" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["binance","bit stamp"]', "exchange name 'bit stamp'"),
        ("[]", "non-empty JSON list"),
        ("binance", "JSON list"),
        ('{"binance": 1}', "non-empty JSON list"),
    ],
)
def test_a_bad_exchanges_list_is_named_at_start_up(env: pytest.MonkeyPatch, value: str, message: str) -> None:
    env.setenv("EXCHANGES", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert (
        "EXCHANGES" in str(caught.value) and message in str(caught.value) and repr(value) in str(caught.value)
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MARKET_DATA_CACHE_TTL_MS", "9999"),
        ("FETCH_INTERVAL_MS", "1999"),
        ("FETCH_INTERVAL_MS", "10001"),
        ("MARKET_DATA_BATCH_SIZE", "0"),
        ("MARKET_DATA_BATCH_SIZE", "101"),
        ("MARKET_DATA_MAX_CONCURRENT_BATCHES", "11"),
        ("TRADING_PAIRS", "BTC/USDT"),
        ("TRADING_PAIRS", '["BTCUSDT"]'),
        ("BINANCE_API_BASE_URL", "api.binance.com"),
        ("KRAKEN_API_BASE_URL", "ftp://api.kraken.com"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_bad_value_stops_start_up_naming_variable_and_value(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert name in str(raised.value)
    assert value in str(raised.value)


def test_missing_required_store_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MARKET_DATA_TABLE_NAME", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "REDIS_URL" in str(raised.value) and "MARKET_DATA_TABLE_NAME" in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"MARKET_DATA_CACHE_STALE_TTL_MS": "4000"}, "MARKET_DATA_CACHE_STALE_TTL_MS"),  # not > interval
        ({"MARKET_DATA_CACHE_STALE_TTL_MS": "15000"}, "MARKET_DATA_CACHE_STALE_TTL_MS"),  # not < ttl
        ({"LAST_KNOWN_GOOD_WRITE_INTERVAL_MS": "3000"}, "LAST_KNOWN_GOOD_WRITE_INTERVAL_MS"),
    ],
)
def test_relations_between_settings_are_enforced(
    env: pytest.MonkeyPatch, overrides: dict[str, str], named: str
) -> None:
    for name, value in overrides.items():
        env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named):
        load_settings()


def test_trading_pairs_are_normalised_and_deduplicated(env: pytest.MonkeyPatch) -> None:
    env.setenv("TRADING_PAIRS", '["btc/usdt", "ETH/USDT", "BTC/USDT"]')
    assert load_settings().trading_pairs == ("BTC/USDT", "ETH/USDT")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("yes", True), ("on", True), ("1", True), ("f", False), ("off", False)],
)
def test_booleans_take_the_usual_words(env: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    env.setenv("REDIS_CLUSTER", value)
    assert load_settings().redis_cluster is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(" 4000", 4000), ("4000 ", 4000), ("4_000", 4000), ("+4000", 4000)]
)
def test_numbers_are_read_as_python_reads_them(env: pytest.MonkeyPatch, value: str, expected: int) -> None:
    env.setenv("FETCH_INTERVAL_MS", value)
    assert load_settings().fetch_interval_ms == expected


@pytest.mark.parametrize(("name", "value"), [("FETCH_INTERVAL_MS", "4e3"), ("REDIS_CLUSTER", "maybe")])
def test_a_value_of_the_wrong_kind_is_named(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert name in str(raised.value) and repr(value) in str(raised.value)


def test_names_are_case_insensitive_and_optional_values_may_be_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(
        {"redis_url": "redis://127.0.0.1:6379/0", "Market_Data_Table_Name": "market-data"}
    )
    assert settings.market_data_table_name == "market-data"
    assert settings.dynamodb_endpoint_url is None and settings.admin_token is None


def _number_parameters_in_function_environments() -> list[tuple[str, dict[str, str]]]:
    """(case, environment) for each Number parameter a function's environment takes, at its
    MinValue, Default and MaxValue, with the function's literal variables as deployed."""
    from local_stack.template import (
        function_definition,
        function_properties,
        load_template,
        serverless_functions,
    )

    template = load_template()
    cases = []
    for function in serverless_functions(template):
        literal = dict(function_definition(template, function).environment)
        variables = function_properties(template, function).get("Environment", {}).get("Variables", {})
        for variable, value in variables.items():
            parameter = template["Parameters"].get(value.get("Ref")) if isinstance(value, dict) else None
            if parameter and parameter["Type"] == "Number":
                for bound in ("MinValue", "Default", "MaxValue"):
                    value = str(int(parameter[bound]))
                    cases.append((f"{function} {variable}={value}", {**literal, variable: value}))
    return cases


def test_every_value_a_template_parameter_allows_starts_the_functions(env: pytest.MonkeyPatch) -> None:
    # Given each numeric parameter the functions read, at its lowest, default and highest value,
    # beside the values the template fixes
    cases = _number_parameters_in_function_environments()
    assert any(case == "FetcherFunction FETCH_INTERVAL_MS=10000" for case, _ in cases), cases
    for case, environment in cases:
        # When a function reads its settings, then it starts, with freshness that fits the slot
        try:
            settings = load_settings({**REQUIRED, **environment})
        except ConfigurationError as exc:
            pytest.fail(f"{case}: {exc}")
        interval = settings.fetch_interval_ms
        assert interval < settings.market_data_cache_stale_ttl_ms < settings.market_data_cache_ttl_ms, case


@pytest.mark.parametrize(
    ("interval", "stale", "ttl"), [(2_000, 5_000, 15_000), (4_000, 5_000, 15_000), (10_000, 11_000, 30_000)]
)
def test_the_stale_threshold_and_ttl_follow_the_interval_unless_set(
    env: pytest.MonkeyPatch, interval: int, stale: int, ttl: int
) -> None:
    env.setenv("FETCH_INTERVAL_MS", str(interval))
    settings = load_settings()
    assert (settings.market_data_cache_stale_ttl_ms, settings.market_data_cache_ttl_ms) == (stale, ttl)

    env.setenv("MARKET_DATA_CACHE_STALE_TTL_MS", str(interval + 500))  # an explicit value wins
    assert load_settings().market_data_cache_stale_ttl_ms == interval + 500
