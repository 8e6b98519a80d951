"""Reads ``template.yaml`` so the local stack and the tests use the deployed definitions, not copies.

Routes, handlers, timeouts, literal environment settings and the DynamoDB table schema all come from
the template: a route added there is served locally, and a key schema changed there is the one the
tests create, so neither can drift from what ``sam deploy`` ships.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"

# Lambda's own defaults, used when neither the function nor Globals set a value.
_DEFAULT_TIMEOUT_SECONDS = 3
_DEFAULT_MEMORY_MB = 128


class CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short tags as their long form.

    ``!Ref X`` becomes ``{"Ref": "X"}``, ``!Sub s`` becomes ``{"Fn::Sub": s}``, ``!GetAtt A.B`` becomes
    ``{"Fn::GetAtt": ["A", "B"]}``: the same shape CloudFormation and SAM see, so code can tell a literal
    from an intrinsic with a plain ``isinstance`` check.
    """


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            # "Resource.Attr.Sub" -> ["Resource", "Attr.Sub"]: only the first dot splits.
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


# Every "!Name" tag: the list of intrinsics grows, and an unknown tag should read, not crash.
CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=CloudFormationLoader)  # a SafeLoader: no arbitrary objects
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    return template


def is_intrinsic(value: Any) -> bool:
    """True for ``{"Ref": ...}`` / ``{"Fn::...": ...}``: a value only CloudFormation can resolve."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    return key in ("Ref", "Condition") or str(key).startswith("Fn::")


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rules: maps merge key by key, lists are additive, anything else the function wins."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if is_intrinsic(global_value) or is_intrinsic(local_value):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def _resource(template: Mapping[str, Any], logical_id: str, expected_type: str) -> dict[str, Any]:
    resource = template["Resources"].get(logical_id)
    if resource is None:
        raise KeyError(f"template has no resource {logical_id!r}")
    if resource.get("Type") != expected_type:
        raise ValueError(f"{logical_id} is a {resource.get('Type')}, not a {expected_type}")
    return resource


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """The function's Properties with ``Globals.Function`` merged in, as SAM deploys them."""
    resource = _resource(template, logical_id, SERVERLESS_FUNCTION)
    global_properties = template.get("Globals", {}).get("Function", {})
    return _merge_globals(global_properties, resource.get("Properties", {}))


def serverless_functions(template: Mapping[str, Any]) -> list[str]:
    return [name for name, res in template["Resources"].items() if res.get("Type") == SERVERLESS_FUNCTION]


@dataclass(frozen=True)
class FunctionDef:
    logical_id: str
    handler: str
    code_uri: str
    timeout_seconds: int
    memory_mb: int
    # Only values written literally in the template; resolved ones (table names, the cache URL,
    # parameters) differ per environment and are supplied by whoever runs the function.
    environment: Mapping[str, str]
    schedule_expression: str | None


def _env_literal(value: Any) -> str | None:
    if isinstance(value, bool):  # CloudFormation passes booleans on as "true"/"false"
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def function_definition(template: Mapping[str, Any], logical_id: str) -> FunctionDef:
    properties = function_properties(template, logical_id)
    variables = properties.get("Environment", {}).get("Variables", {})
    environment = {
        name: literal for name, value in variables.items() if (literal := _env_literal(value)) is not None
    }
    schedule = None
    for event in properties.get("Events", {}).values():
        if event.get("Type") in ("Schedule", "ScheduleV2"):
            schedule = event["Properties"].get("Schedule") or event["Properties"].get("ScheduleExpression")
            break
    return FunctionDef(
        logical_id=logical_id,
        handler=properties["Handler"],
        code_uri=properties["CodeUri"],
        timeout_seconds=int(properties.get("Timeout", _DEFAULT_TIMEOUT_SECONDS)),
        memory_mb=int(properties.get("MemorySize", _DEFAULT_MEMORY_MB)),
        environment=environment,
        schedule_expression=schedule,
    )


@dataclass(frozen=True)
class HttpRoute:
    method: str  # upper case; "ANY" matches every method
    path: str  # API Gateway syntax: "/items/{id}", "/{proxy+}"
    function_logical_id: str
    handler: str
    code_uri: str
    timeout_seconds: int
    iam: bool = False  # Auth.Authorizer AWS_IAM: callers must sign with SigV4 (locally: the admin token)


def http_routes(template: Mapping[str, Any]) -> list[HttpRoute]:
    """Every ``HttpApi`` event of every function, sorted by path then method."""
    routes = []
    for logical_id in serverless_functions(template):
        function = function_definition(template, logical_id)
        events = function_properties(template, logical_id).get("Events", {})
        for event in events.values():
            if event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties", {})
            # No Path and Method means API Gateway's catch-all "$default" route.
            routes.append(
                HttpRoute(
                    method=str(properties.get("Method", "ANY")).upper(),
                    path=properties.get("Path", "$default"),
                    function_logical_id=logical_id,
                    handler=function.handler,
                    code_uri=function.code_uri,
                    timeout_seconds=function.timeout_seconds,
                    iam=properties.get("Auth", {}).get("Authorizer") == "AWS_IAM",
                )
            )
    return sorted(routes, key=lambda route: (route.path, route.method))


@dataclass(frozen=True)
class WebSocketRoute:
    route_key: str  # "$connect", "$disconnect", "$default" or a value of the selection expression
    function: FunctionDef


@dataclass(frozen=True)
class WebSocketApi:
    logical_id: str
    route_selection_expression: str  # e.g. "$request.body.action"
    stage: str
    routes: tuple[WebSocketRoute, ...]


def _referenced_id(value: Any, suffix: str = "") -> str | None:
    """The logical id in ``!Ref X``, ``!GetAtt X.Arn`` or the first ``${X<suffix>}`` of a ``!Sub``."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    text = value.get("Fn::Sub") if isinstance(value, dict) else None
    text = text[0] if isinstance(text, list) else text
    found = re.search(r"\$\{(\w+)" + re.escape(suffix) + r"\}", text) if isinstance(text, str) else None
    return found.group(1) if found else None


def websocket_api(template: Mapping[str, Any]) -> WebSocketApi | None:
    """The template's WebSocket API (an ``AWS::ApiGatewayV2::Api`` of ProtocolType WEBSOCKET) with each
    route's function: Target ``integrations/${X}`` -> X's IntegrationUri -> ``${Function.Arn}``."""
    resources = template["Resources"]
    kind = "AWS::ApiGatewayV2::"
    apis = [name for name, res in resources.items() if res.get("Type") == f"{kind}Api"]
    apis = [name for name in apis if resources[name]["Properties"].get("ProtocolType") == "WEBSOCKET"]
    if not apis:
        return None
    if len(apis) > 1:
        raise ValueError(f"one WebSocket API is served locally; the template has {', '.join(apis)}")
    (api,) = apis
    parts = [
        res for res in resources.values() if _referenced_id(res.get("Properties", {}).get("ApiId")) == api
    ]
    routes = []
    for route in (res["Properties"] for res in parts if res.get("Type") == f"{kind}Route"):
        integration = _referenced_id(route.get("Target"))
        if integration is None:
            raise ValueError(f"{api} route {route['RouteKey']}: its Target names no integration")
        uri = _resource(template, integration, f"{kind}Integration")["Properties"]["IntegrationUri"]
        function_id = _referenced_id(uri, ".Arn")
        if function_id is None:
            raise ValueError(f"{integration}: its IntegrationUri names no function")
        routes.append(WebSocketRoute(route["RouteKey"], function_definition(template, function_id)))
    stages = [res["Properties"]["StageName"] for res in parts if res.get("Type") == f"{kind}Stage"]
    return WebSocketApi(
        logical_id=api,
        route_selection_expression=str(resources[api]["Properties"].get("RouteSelectionExpression", "")),
        stage=stages[0] if stages else "$default",
        routes=tuple(sorted(routes, key=lambda route: route.route_key)),
    )


# The parts of a CloudFormation index definition that boto3's create_table accepts.
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


def table_create_kwargs(template: Mapping[str, Any], logical_id: str, table_name: str) -> dict[str, Any]:
    """Keyword arguments for boto3 ``create_table`` built from an ``AWS::DynamoDB::Table`` definition.

    Time to live is not part of ``create_table``; see ``table_ttl_attribute``.
    """
    properties = _resource(template, logical_id, "AWS::DynamoDB::Table")["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        kwargs["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in properties:
            kwargs[key] = [{k: v for k, v in index.items() if k in _INDEX_KEYS} for index in properties[key]]
    if "StreamSpecification" in properties:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    _reject_intrinsics(kwargs, logical_id)
    return kwargs


def table_ttl_attribute(template: Mapping[str, Any], logical_id: str) -> str | None:
    properties = _resource(template, logical_id, "AWS::DynamoDB::Table")["Properties"]
    ttl = properties.get("TimeToLiveSpecification", {})
    return ttl.get("AttributeName") if ttl.get("Enabled") else None


def _reject_intrinsics(value: Any, where: str) -> None:
    """A ``!Ref`` in the schema has no local value: fail loudly instead of creating a wrong table."""
    if is_intrinsic(value):
        raise ValueError(f"{where}: {value} is resolved only by CloudFormation")
    if isinstance(value, dict):
        for item in value.values():
            _reject_intrinsics(item, where)
    elif isinstance(value, list):
        for item in value:
            _reject_intrinsics(item, where)
