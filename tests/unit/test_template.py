"""Named checks on template.yaml: what an operator of the deployed stack would notice if it broke."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fetcher.exchanges.registry import REGISTRY
from local_stack.template import (
    function_definition,
    function_properties,
    http_routes,
    is_intrinsic,
    load_template,
    serverless_functions,
    table_create_kwargs,
    table_ttl_attribute,
)
from market_data.config import load_settings

CURRENT_PYTHON_RUNTIMES = {"python3.12", "python3.13"}

# Actions AWS only grants on Resource "*" (no resource-level permissions exist for them).
ACTIONS_AWS_REQUIRES_ON_STAR = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:PutMetricData",
}

# AWS managed policies reviewed for "*": they grant only logs, VPC network interfaces and tracing.
REVIEWED_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaVPCAccessExecutionRole",
    "AWSXRayDaemonWriteAccess",
}

# SAM policy templates reviewed for "*": each is scoped to the resource named in its parameters.
REVIEWED_POLICY_TEMPLATES = {
    "DynamoDBReadPolicy",
    "DynamoDBCrudPolicy",
    "DynamoDBWritePolicy",
    "SQSSendMessagePolicy",
    "SQSPollerPolicy",
    "SNSPublishMessagePolicy",
    "SSMParameterReadPolicy",
}

# The table is named after the stack, whether the stack creates it or adopts a kept one.
TABLE_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${AWS::StackName}"
}

WRITE_VERBS = ("Put", "Update", "Delete", "BatchWrite", "Write", "Create", "TransactWrite", "Restore")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == resource_type}


def _parameter_default(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a ``{"Ref": ...}`` points at."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement the stack grants: SAM inline policies and plain IAM resources."""
    for name in serverless_functions(template):
        for policy in function_properties(template, name).get("Policies", []):
            if isinstance(policy, dict) and "Statement" in policy:
                for statement in _as_list(policy["Statement"]):
                    yield name, statement
    for name, res in template["Resources"].items():
        properties = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                    yield name, statement
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in _as_list(properties["PolicyDocument"]["Statement"]):
                yield name, statement


def _function_actions(template: dict[str, Any], logical_id: str) -> set[str]:
    actions: set[str] = set()
    for policy in function_properties(template, logical_id).get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in _as_list(policy["Statement"]):
                if statement.get("Effect", "Allow") == "Allow":
                    actions.update(_as_list(statement["Action"]))
    return actions


# --- runtime ---------------------------------------------------------------------------------------


def test_every_function_and_the_layer_run_a_current_python_on_arm64(template: dict[str, Any]) -> None:
    functions = serverless_functions(template)
    assert functions, "the template defines no functions"
    for name in functions:
        properties = function_properties(template, name)
        assert properties["Runtime"] in CURRENT_PYTHON_RUNTIMES, name
        assert properties["Architectures"] == ["arm64"], name

    layers = _resources_of_type(template, "AWS::Serverless::LayerVersion")
    assert layers, "the shared layer is missing"
    for name, layer in layers.items():
        assert set(layer["Properties"]["CompatibleRuntimes"]) <= CURRENT_PYTHON_RUNTIMES, name
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"], name
        # sam build must produce arm64 wheels, or the layer's compiled deps fail to import on Lambda.
        assert layer["Metadata"]["BuildMethod"] in CURRENT_PYTHON_RUNTIMES, name
        assert layer["Metadata"]["BuildArchitecture"] == "arm64", name


CACHE_USERS = {"FetcherFunction", "PricesApiFunction", "StreamFunction", "BroadcasterFunction"}


def test_every_function_uses_the_shared_layer_and_the_cache_users_run_in_the_vpc(
    template: dict[str, Any],
) -> None:
    assert "VpcConfig" not in template["Globals"]["Function"]
    for name in serverless_functions(template):
        properties = function_properties(template, name)
        assert {"Ref": "CommonLayer"} in properties["Layers"], name
        if name in CACHE_USERS:
            assert properties["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "LambdaSecurityGroup"}], name
            assert properties["VpcConfig"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}, name
        else:  # the whitelist uses DynamoDB only: outside, it needs no NAT or endpoint to reach it
            assert "VpcConfig" not in properties, name


# --- the fetcher's schedule ------------------------------------------------------------------------


def test_fetcher_runs_every_minute_and_is_never_retried(template: dict[str, Any]) -> None:
    # Given the fetcher's merged definition
    properties = function_properties(template, "FetcherFunction")
    schedules = [event for event in properties["Events"].values() if event["Type"] == "Schedule"]

    # Then one rule fires every minute and neither EventBridge nor Lambda's async queue retries it:
    # a retry would only start a late duplicate loop.
    assert len(schedules) == 1
    assert function_definition(template, "FetcherFunction").schedule_expression == "rate(1 minute)"
    assert schedules[0]["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def _fetcher_run_seconds_and_timeout(template: dict[str, Any]) -> tuple[float, int]:
    fetcher = function_definition(template, "FetcherFunction")
    return float(fetcher.environment["FETCHER_RUN_SECONDS"]), fetcher.timeout_seconds


def _interval_parameter(template: dict[str, Any]) -> dict[str, Any]:
    variables = function_properties(template, "FetcherFunction")["Environment"]["Variables"]
    return template["Parameters"][variables["FETCH_INTERVAL_MS"]["Ref"]]


@pytest.mark.parametrize("bound", ["Default", "MaxValue"])
def test_fetcher_invocations_overlap_even_when_the_rule_fires_anywhere_in_its_minute(
    template: dict[str, Any], bound: str
) -> None:
    # Given two rule firings up to ~120 s apart (start of one minute, end of the next)
    run_seconds, _ = _fetcher_run_seconds_and_timeout(template)
    interval_seconds = float(_interval_parameter(template)[bound]) / 1000

    # Then one run lasts past the next one's latest start plus a slot: no slot goes unfetched.
    assert run_seconds >= 120 + interval_seconds


def test_fetcher_timeout_leaves_room_for_the_last_tick(template: dict[str, Any]) -> None:
    run_seconds, timeout = _fetcher_run_seconds_and_timeout(template)
    interval_seconds = float(_interval_parameter(template)["Default"]) / 1000
    assert timeout > run_seconds + 2 * interval_seconds


def test_the_fetcher_has_concurrency_of_its_own_sized_to_its_overlapping_runs(
    template: dict[str, Any],
) -> None:
    """A storm of price requests during a cache outage must not take the concurrency the only
    exchange caller needs, and the reservation must not throttle its own overlapping runs."""
    import math

    _, timeout = _fetcher_run_seconds_and_timeout(template)
    # Runs start every minute and each lasts up to the timeout: that many are alive at once, plus
    # one for a run started by hand (an operator's invoke) while they are.
    overlapping = math.ceil(timeout / 60)
    reserved = function_properties(template, "FetcherFunction").get("ReservedConcurrentExecutions")
    assert reserved == overlapping + 1
    skips = template["Resources"]["FetcherFunction"]["Metadata"]["checkov"]["skip"]
    assert "CKV_AWS_115" not in {skip["id"] for skip in skips}  # no skip whose reason is untrue


# --- the fetcher's exchanges ----------------------------------------------------------------------

# What CloudFormation would pass for the other required settings when checking parameter defaults.
_RESOLVED_STORES = {"REDIS_URL": "rediss://cache.example:6379", "MARKET_DATA_TABLE_NAME": "market-data"}


def _settings_default(variable: str) -> Any:
    return getattr(load_settings(_RESOLVED_STORES), variable.lower())


def _base_url_variables() -> list[str]:
    """Every exchange's base URL variable, one per exchange the fetcher can speak to."""
    return sorted(f"{name.upper()}_API_BASE_URL" for name in REGISTRY)


def _parameter_of(template: dict[str, Any], function: str, variable: str) -> dict[str, Any]:
    value = function_properties(template, function)["Environment"]["Variables"].get(variable)
    assert isinstance(value, dict) and "Ref" in value, f"{function}: {variable} is not set from a parameter"
    assert value["Ref"] in template["Parameters"], f"{variable}: no parameter {value['Ref']}"
    return template["Parameters"][value["Ref"]]


def test_every_base_url_variable_the_template_sets_names_a_known_exchange(template: dict[str, Any]) -> None:
    variables = function_properties(template, "FetcherFunction")["Environment"]["Variables"]
    assert sorted(name for name in variables if name.endswith("_API_BASE_URL")) == _base_url_variables()


@pytest.mark.parametrize("variable", _base_url_variables())
def test_fetcher_gets_every_exchange_base_url_from_a_parameter_defaulting_to_the_real_api(
    template: dict[str, Any], variable: str
) -> None:
    parameter = _parameter_of(template, "FetcherFunction", variable)
    assert parameter["Type"] == "String"
    # The deployed default is the exchange's real API: the same one the settings fall back to.
    assert parameter["Default"].startswith("https://")
    assert parameter["Default"] == REGISTRY[variable.removesuffix("_API_BASE_URL").lower()].base_url


@pytest.mark.parametrize("variable", ["EXCHANGES", "TRADING_PAIRS"])
@pytest.mark.parametrize("function", ["FetcherFunction", "PricesApiFunction"])
def test_exchanges_and_pairs_reach_the_fetcher_and_the_prices_function(
    template: dict[str, Any], function: str, variable: str
) -> None:
    # The fetcher routes pairs by them; the prices function's health reports on each exchange.
    _parameter_of(template, function, variable)


@pytest.mark.parametrize("variable", ["EXCHANGES", "TRADING_PAIRS"])
def test_exchanges_and_pairs_parameters_default_to_the_settings_defaults(
    template: dict[str, Any], variable: str
) -> None:
    default = _parameter_of(template, "FetcherFunction", variable)["Default"]
    deployed = load_settings({**_RESOLVED_STORES, variable: default})
    assert getattr(deployed, variable.lower()) == _settings_default(variable)


def test_exchanges_parameter_names_every_known_exchange(template: dict[str, Any]) -> None:
    description = _parameter_of(template, "FetcherFunction", "EXCHANGES")["Description"]
    for name in REGISTRY:
        assert name in description, name


# --- the HTTP API ----------------------------------------------------------------------------------


def test_prices_health_init_and_openapi_routes_are_gets_on_the_prices_function(
    template: dict[str, Any],
) -> None:
    routes = {(route.method, route.path): route for route in http_routes(template)}
    for path in ("prices", "health", "init", "openapi.json"):
        route = routes.get(("GET", f"/api/market-data/{path}"))
        assert route is not None, f"GET /api/market-data/{path} is not routed"
        assert route.function_logical_id == "PricesApiFunction"
        assert route.handler == "prices_api.handler.lambda_handler"


def test_cors_origins_come_from_the_parameter_and_expose_the_contract_headers(
    template: dict[str, Any],
) -> None:
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == {"Ref": "CorsAllowedOrigins"}
    assert template["Parameters"]["CorsAllowedOrigins"]["Type"] == "CommaDelimitedList"
    # Browsers hide response headers that are not exposed: 206 and 503 clients need these two.
    assert {"X-Missing-Pairs", "Retry-After"} <= set(cors["ExposeHeaders"])
    assert "GET" in cors["AllowMethods"]


DESIGN_LOAD_PER_SECOND = 1_000 / 2  # 1,000 clients polling every 2 s


def test_every_route_is_throttled_by_default_above_the_design_load(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    rate = _parameter_default(template, settings["ThrottlingRateLimit"])
    burst = _parameter_default(template, settings["ThrottlingBurstLimit"])
    # A cap on cost, never on the clients the service is sized for: they must not see 429s.
    assert DESIGN_LOAD_PER_SECOND < rate <= burst


def test_health_routes_are_throttled_tighter_than_prices(template: dict[str, Any]) -> None:
    routes = template["Resources"]["HttpApi"]["Properties"]["RouteSettings"]
    prices = _parameter_default(
        template,
        template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"],
    )
    for route in ("GET /api/market-data/health", "GET /api/market-data/init"):
        rate = _parameter_default(template, routes[route]["ThrottlingRateLimit"])
        burst = _parameter_default(template, routes[route]["ThrottlingBurstLimit"])
        assert 0 < rate <= burst and rate * 10 <= prices, route


# --- IAM -------------------------------------------------------------------------------------------


def test_no_iam_statement_grants_star_beyond_what_aws_requires(template: dict[str, Any]) -> None:
    statements = list(_statements(template))
    assert statements, "no IAM statements found: the check would pass vacuously"
    for owner, statement in statements:
        actions = set(_as_list(statement["Action"]))
        assert not any("*" in action for action in actions), f"{owner}: wildcard action in {actions}"
        if "*" in _as_list(statement["Resource"]):
            assert actions <= ACTIONS_AWS_REQUIRES_ON_STAR, f"{owner}: {actions} on Resource '*'"


def test_managed_policies_and_policy_templates_are_reviewed_ones(template: dict[str, Any]) -> None:
    # A managed policy or SAM policy template is opaque here: only reviewed ones may be attached.
    for name in serverless_functions(template):
        for policy in function_properties(template, name).get("Policies", []):
            if isinstance(policy, str):
                assert policy in REVIEWED_MANAGED_POLICIES, f"{name}: review managed policy {policy}"
            elif "Statement" not in policy:
                (template_name,) = policy
                assert template_name in REVIEWED_POLICY_TEMPLATES, f"{name}: review {template_name}"


def test_prices_function_can_only_read_the_table(template: dict[str, Any]) -> None:
    actions = _function_actions(template, "PricesApiFunction")
    assert actions, "the prices function needs read access for the cache-loss fallback"
    writes = {action for action in actions if action.split(":", 1)[1].startswith(WRITE_VERBS)}
    assert not writes
    for policy in function_properties(template, "PricesApiFunction")["Policies"]:
        if isinstance(policy, dict) and "Statement" not in policy:
            assert next(iter(policy)).endswith("ReadPolicy"), policy


def test_table_access_is_scoped_to_the_table(template: dict[str, Any]) -> None:
    for owner, statement in _statements(template):
        if any(action.startswith("dynamodb:") for action in _as_list(statement["Action"])):
            assert _as_list(statement["Resource"]) == [TABLE_ARN], owner


# --- data, network, logs, outputs ------------------------------------------------------------------


def test_table_is_on_demand_recoverable_and_kept_on_stack_delete(template: dict[str, Any]) -> None:
    table = template["Resources"]["MarketDataTable"]
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # It holds the pair registry: deleting or replacing the stack must not delete it.
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["TableName"] == {"Ref": "AWS::StackName"}  # findable after a delete
    assert table_ttl_attribute(template, "MarketDataTable") == "expiresAt"


def test_cache_accepts_connections_from_the_functions_only(template: dict[str, Any]) -> None:
    cache = template["Resources"]["Cache"]["Properties"]
    assert cache["Engine"] == "valkey"
    assert cache["SecurityGroupIds"] == [{"Ref": "CacheSecurityGroup"}]
    ingress = _resources_of_type(template, "AWS::EC2::SecurityGroupIngress")
    into_cache = [
        rule["Properties"]
        for rule in ingress.values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": ["CacheSecurityGroup", "GroupId"]}
    ]
    assert into_cache
    for rule in into_cache:
        assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]}
        assert "CidrIp" not in rule
    for group in _resources_of_type(template, "AWS::EC2::SecurityGroup").values():
        assert not group["Properties"].get("SecurityGroupIngress"), "inline ingress rule found"


def test_dynamodb_traffic_uses_a_gateway_endpoint(template: dict[str, Any]) -> None:
    endpoints = _resources_of_type(template, "AWS::EC2::VPCEndpoint").values()
    gateways = [e["Properties"] for e in endpoints if e["Properties"]["VpcEndpointType"] == "Gateway"]
    service = {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}
    dynamodb = [gateway for gateway in gateways if gateway["ServiceName"] == service]
    assert len(dynamodb) == 1
    # On the private subnets' route tables, or the functions' DynamoDB calls still go through the NAT;
    # only when they are given (tests/unit/test_deploy.py evaluates the condition).
    assert dynamodb[0]["RouteTableIds"] == {"Ref": "PrivateRouteTableIds"}


def test_every_log_group_has_retention(template: dict[str, Any]) -> None:
    log_groups = _resources_of_type(template, "AWS::Logs::LogGroup")
    assert log_groups
    for name, group in log_groups.items():
        assert "RetentionInDays" in group["Properties"], name


def test_every_function_and_the_api_log_to_a_group_the_stack_creates(template: dict[str, Any]) -> None:
    log_groups = _resources_of_type(template, "AWS::Logs::LogGroup")
    for name in serverless_functions(template):
        target = function_properties(template, name)["LoggingConfig"]["LogGroup"]
        assert is_intrinsic(target) and target["Ref"] in log_groups, name
    access_logs = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]["DestinationArn"]
    assert access_logs["Fn::GetAtt"][0] in log_groups


def test_the_read_path_sends_no_log_line_per_request_and_keeps_warnings_and_metrics(
    template: dict[str, Any],
) -> None:
    # Lambda's START/END/REPORT lines would be one log entry per price read; its filter needs JSON.
    logging_config = function_properties(template, "PricesApiFunction")["LoggingConfig"]
    assert logging_config["LogFormat"] == "JSON"
    assert logging_config["SystemLogLevel"] == "WARN"
    # EMF documents carry no level, which Lambda reads as INFO: a stricter filter would drop them.
    assert logging_config["ApplicationLogLevel"] == "INFO"


def test_outputs_name_the_api_url_table_and_cache_endpoint(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert "${HttpApi}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["MarketDataTableName"]["Value"] == {
        "Fn::If": ["CreatesTable", {"Ref": "MarketDataTable"}, {"Ref": "AWS::StackName"}]
    }
    assert "Cache.Endpoint.Address" in str(outputs["CacheEndpoint"]["Value"])


# --- the reader itself -----------------------------------------------------------------------------


def test_short_tags_read_as_their_long_form(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """
            Resources:
              A:
                Type: X
                Properties:
                  Ref: !Ref B
                  Att: !GetAtt Cache.Endpoint.Address
                  Sub: !Sub ["${x}", {x: !Ref C}]
                  If: !If [Cond, 1, !Ref AWS::NoValue]
            """
        )
    )
    properties = load_template(path)["Resources"]["A"]["Properties"]
    assert properties["Ref"] == {"Ref": "B"}
    assert properties["Att"] == {"Fn::GetAtt": ["Cache", "Endpoint.Address"]}
    assert properties["Sub"] == {"Fn::Sub": ["${x}", {"x": {"Ref": "C"}}]}
    assert properties["If"] == {"Fn::If": ["Cond", 1, {"Ref": "AWS::NoValue"}]}


def test_function_definition_merges_globals_and_keeps_literal_settings_only(template: dict[str, Any]) -> None:
    fetcher = function_definition(template, "FetcherFunction")
    assert fetcher.environment["POWERTOOLS_SERVICE_NAME"] == "market-data"  # from Globals
    assert fetcher.environment["MARKET_DATA_BATCH_SIZE"] == "20"  # from the function
    assert "REDIS_URL" not in fetcher.environment  # resolved by CloudFormation, not here
    assert fetcher.handler == "fetcher.handler.lambda_handler"
    assert fetcher.code_uri == "functions/fetcher"


@mock_aws
def test_table_create_kwargs_make_a_table_with_the_template_schema(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given credentials that can only reach moto
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("dynamodb", region_name="eu-west-1")

    # When the table is created from the template's definition
    client.create_table(**table_create_kwargs(template, "MarketDataTable", "market-data-test"))

    # Then it has the deployed key schema and billing mode
    description = client.describe_table(TableName="market-data-test")["Table"]
    expected = template["Resources"]["MarketDataTable"]["Properties"]["KeySchema"]
    assert description["KeySchema"] == expected
    assert {(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# --- the whitelist function ------------------------------------------------------------------------

WHITELIST = "/api/market-data/whitelist"
ADMIN_ROUTES = {("DELETE", f"{WHITELIST}/{{pair}}"), ("POST", f"{WHITELIST}/{{pair}}/approve")}
PUBLIC_WHITELIST_ROUTES = {("POST", WHITELIST), ("GET", WHITELIST), ("GET", f"{WHITELIST}/{{pair}}")}


def test_whitelist_function_is_small_and_quick(template: dict[str, Any]) -> None:
    whitelist = function_definition(template, "WhitelistFunction")
    assert whitelist.handler == "whitelist.handler.lambda_handler"
    assert whitelist.code_uri == "functions/whitelist"
    assert (whitelist.timeout_seconds, whitelist.memory_mb) == (6, 256)
    assert whitelist.environment["WHITELIST_MAX_PENDING"] == "100"
    assert whitelist.environment["WHITELIST_MAX_PER_SOURCE_PER_HOUR"] == "10"
    # A liquidity floor and a cap on served pairs, the same for the function that refuses submissions
    # and for the fetcher that verifies them (neither left at "no floor" / "no bound").
    fetcher = function_definition(template, "FetcherFunction").environment
    for variable in ("WHITELIST_MIN_QUOTE_VOLUME", "WHITELIST_MAX_ACTIVE"):
        assert whitelist.environment[variable] == fetcher[variable], variable
    assert float(fetcher["WHITELIST_MIN_QUOTE_VOLUME"]) > 0
    assert 0 < int(fetcher["WHITELIST_MAX_ACTIVE"]) <= 100  # what one prices request can name


def test_whitelist_routes_go_to_the_whitelist_function_and_only_admin_routes_need_iam(
    template: dict[str, Any],
) -> None:
    routes = {(route.method, route.path): route for route in http_routes(template)}
    for key in PUBLIC_WHITELIST_ROUTES | ADMIN_ROUTES:
        assert key in routes, f"{key} is not routed"
        assert routes[key].function_logical_id == "WhitelistFunction"
    assert {key for key, route in routes.items() if route.iam} == ADMIN_ROUTES
    # IAM is available to the routes that ask for it, and is nobody's default.
    auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["EnableIamAuthorizer"] is True and "DefaultAuthorizer" not in auth


def test_submissions_are_throttled_tighter_than_the_default(template: dict[str, Any]) -> None:
    properties = template["Resources"]["HttpApi"]["Properties"]
    default, submit = properties["DefaultRouteSettings"], properties["RouteSettings"][f"POST {WHITELIST}"]
    for limit in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
        assert 0 < _parameter_default(template, submit[limit]) < _parameter_default(template, default[limit])


def test_cors_allows_the_methods_the_routes_use(template: dict[str, Any]) -> None:
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    assert {route.method for route in http_routes(template)} <= set(cors["AllowMethods"])


def test_whitelist_function_gets_exactly_the_table_actions_it_calls(template: dict[str, Any]) -> None:
    # TransactWriteItems is authorised through the per-item actions of what it carries (Put and
    # Updates); integration/test_iam_actions.py derives the same set from the calls the code makes.
    assert _function_actions(template, "WhitelistFunction") == {
        "dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
    }  # fmt: skip


def test_fetcher_can_change_whitelist_statuses_in_transactions(template: dict[str, Any]) -> None:
    actions = _function_actions(template, "FetcherFunction")
    assert {"dynamodb:GetItem", "dynamodb:UpdateItem"} <= actions
    assert not {a for a in actions if a.split(":", 1)[1].startswith(("Delete", "Scan"))}


# --- alarms ----------------------------------------------------------------------------------------


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    alarms = {
        name: res["Properties"]
        for name, res in _resources_of_type(template, "AWS::CloudWatch::Alarm").items()
    }
    assert alarms, "the template defines no alarms"
    return alarms


def _condition_holds(template: dict[str, Any], condition: Any, parameters: dict[str, str]) -> bool:
    """CloudFormation's condition functions, evaluated for the given parameter values."""
    if isinstance(condition, str):
        return _condition_holds(template, template["Conditions"][condition], parameters)
    ((function, argument),) = condition.items()
    if function == "Condition":
        return _condition_holds(template, argument, parameters)
    if function == "Fn::Not":
        return not _condition_holds(template, argument[0], parameters)
    if function == "Fn::And":
        return all(_condition_holds(template, item, parameters) for item in argument)
    if function == "Fn::Or":
        return any(_condition_holds(template, item, parameters) for item in argument)
    if function == "Fn::Equals":
        left, right = (parameters[v["Ref"]] if isinstance(v, dict) else v for v in argument)
        return bool(left == right)
    raise AssertionError(f"unexpected condition function {function}")


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(
    template: dict[str, Any],
) -> None:
    assert template["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for name, alarm in _alarms(template).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm.get("ActionsEnabled", True) is True, name


def test_the_email_subscription_exists_only_when_an_address_is_given(template: dict[str, Any]) -> None:
    subscriptions = _resources_of_type(template, "AWS::SNS::Subscription")
    [(name, subscription)] = subscriptions.items()
    properties = subscription["Properties"]
    assert properties["TopicArn"] == {"Ref": "AlarmTopic"}
    assert (properties["Protocol"], properties["Endpoint"]) == ("email", {"Ref": "AlarmEmail"})
    # Without the condition, a stack deployed with no address would fail on an empty endpoint.
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    condition = subscription["Condition"]
    assert _condition_holds(template, condition, {"AlarmEmail": "ops@example.com"}), name
    assert not _condition_holds(template, condition, {"AlarmEmail": ""}), name


def test_the_fetcher_not_running_alarm_fires_after_two_minutes_without_a_heartbeat(
    template: dict[str, Any],
) -> None:
    alarm = _alarms(template)["FetcherNotRunningAlarm"]
    namespace = function_definition(template, "FetcherFunction").environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, "Heartbeats")
    assert alarm["Dimensions"] == [
        {"Name": "service", "Value": "fetcher"}, {"Name": "stack", "Value": {"Ref": "AWS::StackName"}},
    ]  # fmt: skip
    assert (alarm["Statistic"], alarm["Period"]) == ("Sum", 60)
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 2
    # Fewer than one heartbeat a minute is no invocation running...
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    # ...and a fetcher that never runs prints nothing at all: missing data is the failure itself.
    assert alarm["TreatMissingData"] == "breaching"


def test_the_api_server_error_alarm_counts_the_functions_5xx_not_api_gateways(
    template: dict[str, Any],
) -> None:
    alarm = _alarms(template)["ApiServerErrorsAlarm"]
    namespace = function_definition(template, "FetcherFunction").environment["POWERTOOLS_METRICS_NAMESPACE"]
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    stats = {qid: query["MetricStat"]["Metric"] for qid, query in queries.items() if "MetricStat" in query}
    # API Gateway's 5xx include the designed 503s (cold cache, fetcher down): never counted here.
    for metric in stats.values():
        assert (metric["Namespace"], metric["MetricName"]) == (namespace, "Responses5xx")
    services = {
        d["Value"] for metric in stats.values() for d in metric["Dimensions"] if d["Name"] == "service"
    }
    assert services == {"prices-api", "whitelist"}
    # The one series the alarm evaluates adds up every function's count.
    [returned] = [query for query in queries.values() if query.get("ReturnData", True)]
    assert "MetricStat" not in returned
    assert set(re.findall(r"[a-z]\w*", returned["Expression"])) >= set(stats)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
