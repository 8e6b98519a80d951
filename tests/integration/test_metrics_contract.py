"""The dashboard and the alarms chart what the functions actually print.

The real handlers run (a fetcher invocation and more slots against the exchange simulator,
prices and whitelist requests from events/*.json), the EMF documents they print are collected
from stdout, and every metric template.yaml's dashboard and alarms name must be among them with
the same namespace, dimensions (names and values) and, where the alarm says, unit. The names on
the template side are read from template.yaml itself, not from the code's constants.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.sync.client import connect

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from local_stack.template import function_definition, load_template
from tests.support import load_event
from tests.websocket_stack import local_websocket_stack

STACK = "metrics-contract"
PSEUDO = {"AWS::StackName": STACK, "AWS::Region": "eu-west-1", "AWS::URLSuffix": "amazonaws.com"}


@dataclass(frozen=True)
class MetricRef:
    """A metric as the template names it; a dimension value of None matches any (SEARCH)."""

    where: str
    namespace: str
    name: str
    dimensions: dict[str, str | None]
    unit: str | None = None


def emf_documents(printed: str) -> list[dict[str, Any]]:
    documents = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def _substitute(text: str) -> str:
    """Fn::Sub for the dashboard body: pseudo parameters get test values, resources their id."""

    parameters = load_template()["Parameters"]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in parameters:  # a parameter (a threshold line's value): its default
            return str(parameters[name]["Default"])
        return PSEUDO.get(name, name.split(".")[0])

    return re.sub(r"\$\{([^}!]+)\}", value, text)


def _resolve(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return PSEUDO.get(value["Ref"], value["Ref"])
    return value


def _alarm_refs(logical_id: str, properties: dict[str, Any]) -> Iterator[MetricRef]:
    def dims(raw: list[dict[str, Any]]) -> dict[str, str | None]:
        return {d["Name"]: _resolve(d["Value"]) for d in raw}

    if "MetricName" in properties:
        yield MetricRef(
            logical_id,
            properties["Namespace"],
            properties["MetricName"],
            dims(properties.get("Dimensions", [])),
            properties.get("Unit"),
        )
    for query in properties.get("Metrics", []):
        stat = query.get("MetricStat")
        if stat:
            metric = stat["Metric"]
            yield MetricRef(
                f"{logical_id}.{query['Id']}",
                metric["Namespace"],
                metric["MetricName"],
                dims(metric.get("Dimensions", [])),
                stat.get("Unit"),
            )


SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s*(.*?)',")


def _dashboard_refs(body: dict[str, Any]) -> Iterator[MetricRef]:
    for widget in body["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            title = widget["properties"].get("title", "?")
            if isinstance(entry[0], dict):  # an expression: only SEARCH names metrics
                expression = entry[0]["expression"]
                match = SEARCH.search(expression)
                assert match or "SEARCH(" not in expression, f"unreadable SEARCH in {title}: {expression}"
                if match:
                    namespace, *dimension_names = match.group(1).split(",")
                    terms = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
                    yield MetricRef(
                        f"dashboard: {title}",
                        namespace,
                        terms.pop("MetricName"),
                        {name: terms.get(name) for name in dimension_names},
                    )
                continue
            fields = [item for item in entry if not isinstance(item, dict)]
            assert "..." not in fields and "." not in fields, f"write dashboard entries in full: {entry}"
            namespace, name, *pairs = fields
            yield MetricRef(
                f"dashboard: {title}", namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))
            )


def template_metric_refs(template: dict[str, Any] | None = None) -> list[MetricRef]:
    """Every metric the alarms and the dashboard name, whatever its namespace."""
    template = template if template is not None else load_template()
    refs: list[MetricRef] = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            refs += _alarm_refs(logical_id, resource["Properties"])
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(_substitute(resource["Properties"]["DashboardBody"]["Fn::Sub"]))
            refs += _dashboard_refs(body)
    return refs


def is_builtin(namespace: str) -> bool:
    """AWS's own metrics (AWS/Lambda, AWS/ApiGateway, ...): no handler prints them."""
    return namespace.startswith("AWS/")


def foreign_refs(refs: list[MetricRef], namespace: str) -> list[MetricRef]:
    """References in neither the handlers' namespace nor a built-in one: a misspelt namespace
    names a metric nobody prints, and its chart or alarm would stay empty."""
    return [ref for ref in refs if ref.namespace != namespace and not is_builtin(ref.namespace)]


def handlers_namespace(template: dict[str, Any]) -> str:
    return function_definition(template, "FetcherFunction").environment["POWERTOOLS_METRICS_NAMESPACE"]


def matches(ref: MetricRef, document: dict[str, Any]) -> bool:
    for directive in document["_aws"]["CloudWatchMetrics"]:
        if directive["Namespace"] != ref.namespace:
            continue
        units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
        if ref.name not in units or (ref.unit is not None and units[ref.name] != ref.unit):
            continue
        for dimension_set in directive["Dimensions"]:
            if set(dimension_set) == set(ref.dimensions) and all(
                value is None or document.get(name) == value for name, value in ref.dimensions.items()
            ):
                return True
    return False


# --------------------------------------------------------------------------- running the handlers


def _slot(container: Fetcher, slot: int) -> None:
    run_slot(container, slot, "contract-invocation", LoopSummary())


def run_fetcher(make_container: Callable[..., Fetcher], simulator: BinanceSimulator) -> None:
    import fetcher.handler

    # One real invocation: the handler's own loop ticks a couple of slots, one ticker corrupted.
    simulator.set_bad_ticker("ETHUSDT", "nan")
    fetcher.handler._fetcher = None
    fetcher.handler.lambda_handler(load_event("fetcher_schedule.json"), LocalLambdaContext("fetcher", 7))
    simulator.clear_faults()
    # More slots of the same loop: an exchange error, then a rate limit and the paused slot after it.
    container = make_container()
    simulator.set_fault("server_error", path="/api/v3/ticker/24hr", count=1)
    _slot(container, 10_001)
    simulator.set_fault("rate_limit", path="/api/v3/ticker/24hr", count=1, retry_after=30)
    _slot(container, 10_002)
    _slot(container, 10_003)


def _api_event(name: str, **changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    event.update(changes)
    return event


def run_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    import prices_api.handler as prices

    context = LocalLambdaContext("prices", 6)
    # ETH/USDT was corrupted at the exchange all along: served BTC/USDT, named ETH/USDT missing.
    assert prices.lambda_handler(_api_event("prices_get.json"), context)["statusCode"] == 206
    unlisted = _api_event(
        "prices_get.json", queryStringParameters={"pairs": "XRP/USDT"}, rawQueryString="pairs=XRP/USDT"
    )
    assert prices.lambda_handler(unlisted, context)["statusCode"] == 404  # not listed: no retry
    listed_not_served = _api_event(
        "prices_get.json", queryStringParameters={"pairs": "ETH/USDT"}, rawQueryString="pairs=ETH/USDT"
    )
    assert prices.lambda_handler(listed_not_served, context)["statusCode"] == 503  # designed: none yet
    assert prices.lambda_handler(_api_event("prices_bad_pairs.json"), context)["statusCode"] == 400
    assert prices.lambda_handler(_api_event("health_get.json"), context)["statusCode"] == 200
    with monkeypatch.context() as patch:  # a bug in the read path: the handler maps it to a 500

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        patch.setattr(prices, "get_prices", broken)
        assert prices.lambda_handler(_api_event("prices_get.json"), context)["statusCode"] == 500
    prices.read_metrics.flush()


def run_whitelist(monkeypatch: pytest.MonkeyPatch) -> None:
    import whitelist.handler as whitelist
    from market_data.config import get_settings

    monkeypatch.setenv("WHITELIST_MAX_PER_SOURCE_PER_HOUR", "1")
    get_settings.cache_clear()
    context = LocalLambdaContext("whitelist", 6)
    assert whitelist.lambda_handler(_api_event("whitelist_submit.json"), context)["statusCode"] == 202
    second = _api_event("whitelist_submit.json", body='{"pair": "ADA/USDT"}', isBase64Encoded=False)
    assert whitelist.lambda_handler(second, context)["statusCode"] == 429  # refused by the hourly cap
    assert whitelist.lambda_handler(_api_event("whitelist_revoke.json"), context)["statusCode"] == 200
    assert whitelist.lambda_handler(_api_event("whitelist_approve.json"), context)["statusCode"] == 200
    with monkeypatch.context() as patch:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        patch.setattr(whitelist.submissions, "list_pairs", broken)
        assert whitelist.lambda_handler(_api_event("whitelist_list.json"), context)["statusCode"] == 500
    whitelist.request_metrics.flush()


@pytest.fixture
def printed_documents(
    make_container: Callable[..., Fetcher],
    simulator: BinanceSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> list[dict[str, Any]]:
    namespace = handlers_namespace(load_template())
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", namespace)
    monkeypatch.setenv("METRICS_STACK", STACK)
    monkeypatch.setenv("FETCHER_RUN_SECONDS", "10")
    capsys.readouterr()
    run_fetcher(make_container, simulator)
    run_prices(monkeypatch)
    run_whitelist(monkeypatch)
    run_broadcaster(monkeypatch)
    return emf_documents(capsys.readouterr().out)


def run_broadcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    """One fan-out to a subscribed connection, the broadcaster called as the fetcher starts it."""
    import broadcaster.handler as broadcaster
    from market_data.clock import now_ms

    with local_websocket_stack(monkeypatch) as base, connect(base.replace("http", "ws", 1) + "/ws") as client:
        client.send(json.dumps({"action": "subscribe", "pairs": ["BTC/USDT"]}))
        client.recv(timeout=10)
        slot_ms = now_ms() // 4000 * 4000
        notice = {
            "slot": slot_ms // 4000,
            "slotMs": slot_ms,
            "pairs": ["BTC/USDT"],
            "status": "ok",
            "reason": "",
        }
        answer = broadcaster.lambda_handler(notice, LocalLambdaContext("BroadcasterFunction", 30))
        assert answer["connections"] == 1, answer


def _misspell_alarm(template: dict[str, Any]) -> None:
    template["Resources"]["FetcherNotRunningAlarm"]["Properties"]["Namespace"] = "MarketDta"


def _misspell_alarm_query(template: dict[str, Any]) -> None:
    queries = template["Resources"]["ApiServerErrorsAlarm"]["Properties"]["Metrics"]
    [query] = [q for q in queries if q["Id"] == "prices"]
    query["MetricStat"]["Metric"]["Namespace"] = "MarketDta"


def _misspell_dashboard_row(template: dict[str, Any]) -> None:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    row = '["MarketData", "ReadLatency"'
    assert row in body["Fn::Sub"]
    body["Fn::Sub"] = body["Fn::Sub"].replace(row, '["MarketDta", "ReadLatency"', 1)


def _misspell_search(template: dict[str, Any]) -> None:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    search = 'SEARCH(\'{MarketData,kind,service,stack} MetricName=\\"ExchangeErrorsByKind\\"'
    assert search in body["Fn::Sub"]
    body["Fn::Sub"] = body["Fn::Sub"].replace(search, search.replace("MarketData", "MarketDta"), 1)


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (_misspell_alarm, "FetcherNotRunningAlarm"),
        (_misspell_alarm_query, "ApiServerErrorsAlarm.prices"),
        (_misspell_dashboard_row, "dashboard: Prices read latency in the function (ms)"),
        (_misspell_search, "dashboard: Exchange errors by kind (per minute)"),
    ],
)
def test_a_misspelt_namespace_anywhere_in_the_template_is_caught(
    break_it: Callable[[dict[str, Any]], None], where: str
) -> None:
    template = load_template()
    namespace = handlers_namespace(template)
    refs = template_metric_refs(template)
    # The real template: every reference is the handlers' namespace or AWS's own, and both occur.
    assert foreign_refs(refs, namespace) == []
    assert {ref.namespace == namespace for ref in refs} == {True, False}

    scratch = copy.deepcopy(template)
    break_it(scratch)

    [foreign] = foreign_refs(template_metric_refs(scratch), namespace)
    assert (foreign.where, foreign.namespace) == (where, "MarketDta")


def test_every_metric_the_dashboard_and_alarms_use_is_printed_by_the_handlers(
    printed_documents: list[dict[str, Any]],
) -> None:
    namespace = handlers_namespace(load_template())
    all_refs = template_metric_refs()
    assert foreign_refs(all_refs, namespace) == [], f"only {namespace} or AWS/* namespaces"
    refs = [ref for ref in all_refs if ref.namespace == namespace]
    assert len(refs) >= 40 and any(ref.unit for ref in refs)  # the parse found the dashboard and alarms
    printed = {
        (doc.get("service"), metric["Name"])
        for doc in printed_documents
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    unmatched = [ref for ref in refs if not any(matches(ref, doc) for doc in printed_documents)]
    assert unmatched == [], (
        f"named in template.yaml but never printed like that: {unmatched}\nprinted: {sorted(printed)}"
    )


def test_the_documents_are_valid_emf_with_one_namespace_and_a_fixed_set_of_dimensions(
    printed_documents: list[dict[str, Any]],
) -> None:
    namespaces, dimension_sets, units = set(), set(), {}
    for document in printed_documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            namespaces.add(directive["Namespace"])
            dimension_sets.update(tuple(sorted(names)) for names in directive["Dimensions"])
            for metric in directive["Metrics"]:
                # One unit per metric name, whatever printed it.
                assert units.setdefault(metric["Name"], metric["Unit"]) == metric["Unit"]
                values = document[metric["Name"]]
                assert isinstance(values, (int, float)) or 1 <= len(values) <= 100
        assert document["stack"] == STACK
        assert isinstance(document["_aws"]["Timestamp"], int)
    assert len(namespaces) == 1
    assert dimension_sets == {("service", "stack"), ("kind", "service", "stack")}
    # The latencies are milliseconds, the rest counts.
    assert {name for name, unit in units.items() if unit == "Milliseconds"} >= {
        "FetchLatency", "CacheWriteLatency", "SyncGap", "ReadLatency", "TickDuration",
    }  # fmt: skip
