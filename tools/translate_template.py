"""Print template.yaml as CloudFormation's SAM transform turns it into plain CloudFormation.

Run with the SAM CLI's own Python (``.tools/sam/bin/python``), which has the translator:

    .tools/sam/bin/python tools/translate_template.py [Name=Value ...]

Parameters given are used where the transform resolves them (``Tracing`` decides the X-Ray
policy); the rest keep their defaults. Offline: the managed policies come from the translator's
bundled list, and code locations are placeholders, as ``sam validate`` does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class BundledPolicies:
    def load(self) -> dict[str, str]:
        return get_bundled_managed_policy_map("aws")  # type: ignore[no-any-return]


def translated(parameters: dict[str, str]) -> dict[str, object]:
    template = yaml_parse(TEMPLATE.read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")  # for the ARNs it writes
    return transform(template, parameters, BundledPolicies(), feature_toggle=None)  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    parameters = dict(argument.split("=", 1) for argument in argv)
    json.dump(translated(parameters), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
