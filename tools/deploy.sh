#!/usr/bin/env bash
# `make deploy ENV=<name>` after `make build`: the one deploy path, from a fresh account on.
#
# An environment's first deploy (samconfig.toml holds no VpcId for it yet) is guided: the SAM CLI
# asks for every parameter and saves the answers under [<name>], so every later deploy of it reads
# them and asks nothing. A second environment is the same command with another name.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
sam="${SAM:-$here/tools/sam.sh}"
config="${SAMCONFIG:-$here/samconfig.toml}"
env="${1:-}"

if [[ ! "$env" =~ ^[a-z][a-z0-9-]{0,19}$ ]]; then
  echo "deploy: ENV='$env' is not an environment name: lowercase letters, digits and hyphens," \
    "starting with a letter, at most 20 (e.g. make deploy ENV=dev)" >&2
  exit 2
fi

# Whether the guided deploy has saved this environment's VPC (the one parameter with no default
# that every deploy needs), and the region saved for it. tomllib is in Python 3.11's standard library.
read -r saved region < <("$here/.tools/sam/bin/python" - "$config" "$env" <<'PY'
import sys, tomllib
from pathlib import Path

path, env = Path(sys.argv[1]), sys.argv[2]
section = (tomllib.loads(path.read_text()) if path.exists() else {}).get(env, {})
overrides = section.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
overrides = " ".join(overrides) if isinstance(overrides, list) else overrides
region = section.get("global", {}).get("parameters", {}).get("region", "")
print("yes" if "VpcId=" in overrides else "no", region or "-")
PY
)
# A new environment's guided run would offer us-east-1, where binance.com refuses requests (451).
[[ "$region" == - ]] && region="${AWS_REGION:-${AWS_DEFAULT_REGION:-eu-west-1}}"

if [[ "$saved" == yes ]]; then
  exec "$sam" deploy --config-env "$env" --config-file "$config"
fi

cat <<TEXT
First deploy of '$env': the SAM CLI asks for each parameter (Enter keeps the default shown) and
saves the answers under [$env] in $(basename "$config"); later 'make deploy ENV=$env' asks nothing.
  VpcId                 the VPC (vpc-...)
  PrivateSubnetIds      its private subnets with a NAT route, comma-separated (subnet-a,subnet-b)
  PrivateRouteTableIds  their route tables for a DynamoDB endpoint, or empty if they already have one
  AlarmEmail            an address for the alarms (it must confirm), or empty
  AdoptExistingTable    true only to reuse the table a deleted '$env' stack left behind
  "Save arguments to configuration file [Y/n]": Y; "configuration environment": $env
More in docs/operations.md#deploy.
TEXT
exec "$sam" deploy --guided --config-env "$env" --config-file "$config" \
  --stack-name "market-data-$env" --region "$region" --capabilities CAPABILITY_IAM \
  --parameter-overrides "Environment=$env"
