"""What a first deploy from a fresh AWS account meets, read from the template as CloudFormation
receives it: translated by the SAM transform (``tools/translate_template.py``, the SAM CLI's own
translator, offline), with its conditions evaluated for the parameters a user would give."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from typing import Any

import pytest

from tests.support import REPO_ROOT

SAM_PYTHON = REPO_ROOT / ".tools/sam/bin/python"
REQUIRED = {"VpcId": "vpc-0a1b2c3d", "PrivateSubnetIds": "subnet-0a1b2c3d,subnet-1a2b3c4d"}
STACK = "market-data-dev"


@functools.cache
def _translate(parameters: tuple[tuple[str, str], ...]) -> str:
    if not SAM_PYTHON.exists():
        pytest.fail("the SAM CLI's environment is missing: run `make setup` (make test does)")
    arguments = [f"{name}={value}" for name, value in parameters]
    result = subprocess.run(
        [str(SAM_PYTHON), str(REPO_ROOT / "tools/translate_template.py"), *arguments],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout


class Deployed:
    """The translated template with every condition decided: the resources CloudFormation would create."""

    def __init__(self, **given: str) -> None:
        parameters = {**REQUIRED, **given}
        template = json.loads(_translate(tuple(sorted(parameters.items()))))
        defaults = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
        self.parameters: dict[str, Any] = {**defaults, **parameters, "AWS::StackName": STACK}
        for name, spec in template["Parameters"].items():
            if spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith("List<"):
                value = self.parameters[name]
                self.parameters[name] = [item for item in str(value or "").split(",")] if value else [""]
        self.conditions = {name: self.value(rule) for name, rule in template.get("Conditions", {}).items()}
        self.resources = {
            name: resource
            for name, resource in template["Resources"].items()
            if "Condition" not in resource or self.conditions[resource["Condition"]]
        }
        self.outputs = {
            name: output
            for name, output in template.get("Outputs", {}).items()
            if "Condition" not in output or self.conditions[output["Condition"]]
        }

    def value(self, expression: Any) -> Any:
        """Evaluate the intrinsics conditions use; a reference to a resource stays as it is."""
        if not isinstance(expression, dict) or len(expression) != 1:
            return expression
        ((function, argument),) = expression.items()
        if function == "Ref":
            return self.parameters.get(argument, expression)
        if function == "Condition":
            return self.conditions[argument]
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return left == right
        if function == "Fn::Not":
            return not self.value(argument[0])
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.value(items))
        if function == "Fn::If":
            condition, when_true, when_false = argument
            return self.value(when_true if self.conditions[condition] else when_false)
        return expression

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["Type"] == resource_type}

    def managed_policies(self, function: str) -> set[str]:
        role = self.resources[self.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]]
        return {arn.rsplit("/", 1)[-1] for arn in role["Properties"]["ManagedPolicyArns"]}

    def environment(self, function: str) -> dict[str, Any]:
        variables = self.resources[function]["Properties"]["Environment"]["Variables"]
        return {name: self.value(value) for name, value in variables.items()}


def _references(deployed: Deployed, value: Any) -> set[str]:
    """Every resource or parameter a value names (Ref, GetAtt, names inside Sub strings), taking
    the branch of each Fn::If that the conditions choose."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref":
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else item.split(".")[0])
            elif key == "Fn::If":
                condition, when_true, when_false = item
                found |= _references(deployed, when_true if deployed.conditions[condition] else when_false)
            elif key == "Fn::Sub":
                text, variables = (item, {}) if isinstance(item, str) else item
                names = re.findall(r"\$\{([^!}][^}]*)\}", text)
                found |= {name.split(".")[0] for name in names if name not in variables}
                found |= _references(deployed, variables)
            else:
                found |= _references(deployed, item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(deployed, item)
    return found


def _dangling(deployed: Deployed) -> set[str]:
    """Names referred to that would not exist: CloudFormation refuses such a template."""
    known = set(deployed.resources) | set(deployed.parameters)
    names: set[str] = set()
    for resource in deployed.resources.values():
        names |= _references(deployed, resource.get("Properties", {}))
    for output in deployed.outputs.values():
        names |= _references(deployed, output["Value"])
    return {name for name in names if not name.startswith("AWS::") and name not in known}


# --- D2: one path from a fresh account -------------------------------------------------------------


def test_a_first_deploy_needs_only_the_vpc_and_its_subnets() -> None:
    template = json.loads(_translate(tuple(sorted(REQUIRED.items()))))
    without_default = {name for name, spec in template["Parameters"].items() if "Default" not in spec}
    assert without_default == set(REQUIRED)


def test_the_guided_deploy_asks_no_question_about_authorisation() -> None:
    # `sam deploy --guided` aborts on Enter at "<function> has no authentication. Is this okay? [y/N]"
    # for any API function it finds without auth: ask the SAM CLI's own check.
    script = (
        "import json, sys\n"
        "from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider\n"
        "from samcli.commands.deploy.auth_utils import auth_per_resource\n"
        "overrides = json.loads(sys.argv[2])\n"
        "stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1], parameter_overrides=overrides)\n"
        "print(json.dumps(auth_per_resource(stacks)))\n"
    )
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(REPO_ROOT / "template.yaml"), json.dumps(REQUIRED)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    checked = json.loads(result.stdout)
    assert {name for name, _ in checked} == {"PricesApiFunction", "WhitelistFunction"}
    assert [name for name, has_auth in checked if not has_auth] == []


# --- D3: the DynamoDB gateway endpoint is optional -------------------------------------------------


def test_no_gateway_endpoint_unless_route_tables_are_given() -> None:
    assert Deployed().of_type("AWS::EC2::VPCEndpoint") == {}
    assert not _dangling(Deployed())


def test_route_tables_given_get_the_dynamodb_gateway_endpoint() -> None:
    deployed = Deployed(PrivateRouteTableIds="rtb-0a1b2c3d,rtb-1a2b3c4d")
    (endpoint,) = deployed.of_type("AWS::EC2::VPCEndpoint").values()
    assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
    assert deployed.value(endpoint["Properties"]["RouteTableIds"]) == ["rtb-0a1b2c3d", "rtb-1a2b3c4d"]


# --- D6: the cache's cap and the alarms on it -------------------------------------------------------


def test_the_cache_cap_is_the_parameter_and_throttling_raises_an_alarm() -> None:
    deployed = Deployed(CacheMaxEcpuPerSecond="30000")
    limits = deployed.resources["Cache"]["Properties"]["CacheUsageLimits"]
    assert deployed.value(limits["ECPUPerSecond"]["Maximum"]) == "30000"
    alarms = deployed.of_type("AWS::CloudWatch::Alarm").values()
    throttled = [a["Properties"] for a in alarms if a["Properties"].get("MetricName") == "ThrottledCmds"]
    assert len(throttled) == 1
    assert throttled[0]["Namespace"] == "AWS/ElastiCache"
    assert throttled[0]["Dimensions"] == [{"Name": "clusterId", "Value": {"Ref": "Cache"}}]
    near_cap = [
        a["Properties"]
        for a in alarms
        if "ElastiCacheProcessingUnits" in json.dumps(a["Properties"].get("Metrics", []))
    ]
    assert len(near_cap) == 1
    expression = near_cap[0]["Metrics"][0]["Expression"]["Fn::Sub"]
    assert "${CacheMaxEcpuPerSecond}" in expression and near_cap[0]["Threshold"] < 1


# --- D7: operations traps ---------------------------------------------------------------------------


def test_the_cache_name_changes_with_its_generation_so_a_replacement_can_be_created() -> None:
    first = Deployed().resources["Cache"]["Properties"]["ServerlessCacheName"]
    assert first == {"Fn::Sub": "${AWS::StackName}-cache-${CacheGeneration}"}
    template = json.loads(_translate(tuple(sorted(REQUIRED.items()))))
    generation = template["Parameters"]["CacheGeneration"]
    # ElastiCache's names: at most 40 characters; a 20-character stack name must still fit.
    assert len("x" * 20 + "-cache-" + str(generation["MaxValue"])) <= 40


def test_the_kept_table_is_named_after_the_stack_and_a_redeploy_can_adopt_it() -> None:
    created, adopted = Deployed(), Deployed(AdoptExistingTable="true")
    table = created.resources["MarketDataTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert created.value(table["Properties"]["TableName"]) == STACK
    assert "MarketDataTable" not in adopted.resources  # no second table, no "already exists"
    assert not _dangling(adopted)
    for function in ("FetcherFunction", "PricesApiFunction", "WhitelistFunction", "StreamFunction"):
        assert adopted.environment(function)["MARKET_DATA_TABLE_NAME"] == STACK
        assert created.environment(function)["MARKET_DATA_TABLE_NAME"] == {"Ref": "MarketDataTable"}


def test_only_the_functions_that_use_the_cache_are_in_the_vpc() -> None:
    deployed = Deployed()
    in_vpc = {
        name
        for name, function in deployed.of_type("AWS::Lambda::Function").items()
        if "VpcConfig" in function["Properties"]
    }
    assert in_vpc == {"FetcherFunction", "PricesApiFunction", "StreamFunction", "BroadcasterFunction"}
    assert "AWSLambdaVPCAccessExecutionRole" not in deployed.managed_policies("WhitelistFunction")


@pytest.mark.parametrize(
    "function",
    ["FetcherFunction", "PricesApiFunction", "WhitelistFunction", "StreamFunction", "BroadcasterFunction"],
)
def test_the_xray_policy_comes_only_with_tracing(function: str) -> None:
    off, on = Deployed(), Deployed(Tracing="Active")
    assert "AWSXrayWriteOnlyAccess" not in off.managed_policies(function)
    assert "TracingConfig" not in off.resources[function]["Properties"]
    assert off.environment(function)["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "AWSXrayWriteOnlyAccess" in on.managed_policies(function)
    assert on.value(on.resources[function]["Properties"]["TracingConfig"]["Mode"]) == "Active"
    assert on.environment(function)["POWERTOOLS_TRACE_DISABLED"] == "false"


def test_the_outputs_say_who_the_alarms_reach() -> None:
    nobody = Deployed().value(Deployed().outputs["AlarmsNotify"]["Value"])
    assert nobody.startswith("nobody")
    someone = Deployed(AlarmEmail="ops@example.com")
    assert "AlarmEmail" in str(someone.value(someone.outputs["AlarmsNotify"]["Value"]))
    assert (
        "AlarmEmailSubscription" in someone.resources and "AlarmEmailSubscription" not in Deployed().resources
    )


# --- D8: the documented parameters and where each setting comes from -------------------------------

CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"


def _table(heading: str) -> list[list[str]]:
    section = CONFIGURATION.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def _names(cell: str) -> list[str]:
    return re.findall(r"`([A-Za-z_]+)`", cell.split(" (")[0])


def test_every_parameter_is_documented_with_its_default_and_range() -> None:
    from local_stack.template import load_template

    parameters = load_template()["Parameters"]
    documented: dict[str, list[str]] = {}
    for row in _table("The stack's parameters"):
        names, default = _names(row[0]), row[1]
        defaults = (
            [part.strip(" `") for part in default.split(",")] if len(names) > 1 else [default.strip("`")]
        )
        for index, name in enumerate(names):
            documented[name] = [defaults[min(index, len(defaults) - 1)], row[2], row[3]]
    assert set(documented) == set(parameters)
    for name, spec in parameters.items():
        default, value_range, effect = documented[name]
        assert value_range and effect, name
        if "Default" not in spec:
            assert default == "none", name
        elif spec["Default"] == "":
            assert default == "empty", name
        elif not str(spec["Default"]).startswith("https://"):
            assert default == str(spec["Default"]), name
        for bound in ("MinValue", "MaxValue"):
            if bound in spec:
                assert str(spec[bound]) in value_range.replace(",", ""), (name, bound)


def test_the_settings_table_says_where_each_deployed_value_comes_from() -> None:
    from local_stack.template import function_properties, load_template, serverless_functions

    template = load_template()
    set_by_template: dict[str, Any] = {}
    for function in serverless_functions(template):
        set_by_template.update(function_properties(template, function)["Environment"]["Variables"])
    for row in _table("Environment variables"):
        on_aws = row[3]
        for index, name in enumerate(_names(row[0])):
            value = set_by_template.get(name)
            if on_aws.startswith("parameter"):
                assert name in json.dumps(template["Globals"]) + json.dumps(template["Resources"]), name
                assert _names(on_aws)[min(index, len(_names(on_aws)) - 1)] in json.dumps(value), (name, value)
            elif on_aws.startswith("fixed"):
                fixed = on_aws.split(": ", 1)[1].replace(",", "")
                if value == {"Ref": "AWS::StackName"}:
                    assert "the stack name" in fixed, name
                else:
                    assert isinstance(value, str) and value in fixed, (name, value)
            elif on_aws in ("default", "unset", "follows `FetchIntervalMs`"):
                assert value is None, (name, value)


# --- the optional CDN (issue: cheaper reads) ---------------------------------------------------------


def test_no_distribution_unless_asked_for() -> None:
    deployed = Deployed()
    assert deployed.of_type("AWS::CloudFront::Distribution") == {}
    assert "CdnUrl" not in deployed.outputs
    assert deployed.environment("WhitelistFunction")["CDN_ORIGIN_SECRET"] == ""


def test_the_distribution_caches_prices_by_their_parameters_and_nothing_else() -> None:
    deployed = Deployed(Cdn="Enabled")
    (distribution,) = deployed.of_type("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    (prices,) = config["CacheBehaviors"]
    assert prices["PathPattern"] == "/api/market-data/prices"
    (policy,) = deployed.of_type("AWS::CloudFront::CachePolicy").values()
    keyed = policy["Properties"]["CachePolicyConfig"]
    assert keyed["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"]["QueryStrings"] == [
        "pairs",
        "include",
    ]
    assert (
        keyed["MaxTTL"] <= 4 and keyed["DefaultTTL"] == 0
    )  # never past the slot; the origin's max-age rules
    # Everything else (health, the whitelist, admin) under AWS's managed CachingDisabled policy.
    assert config["DefaultCacheBehavior"]["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert "POST" in config["DefaultCacheBehavior"]["AllowedMethods"]
    assert "CdnUrl" in deployed.outputs and not _dangling(deployed)


def test_the_whitelist_trusts_the_client_address_only_from_the_distribution() -> None:
    deployed = Deployed(Cdn="Enabled")
    (distribution,) = deployed.of_type("AWS::CloudFront::Distribution").values()
    (origin,) = distribution["Properties"]["DistributionConfig"]["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "X-Origin-Verify"
    # The same value the function compares against, and the address header it then reads.
    assert header["HeaderValue"] == deployed.environment("WhitelistFunction")["CDN_ORIGIN_SECRET"]
    (forwarding,) = deployed.of_type("AWS::CloudFront::OriginRequestPolicy").values()
    headers = forwarding["Properties"]["OriginRequestPolicyConfig"]["HeadersConfig"]["Headers"]
    assert "CloudFront-Viewer-Address" in headers and "Host" not in headers
