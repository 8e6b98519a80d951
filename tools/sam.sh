#!/usr/bin/env bash
# Runs the SAM CLI from its own tool environment (it pins its own boto3 and pydantic), offline:
# a region, dummy credentials, no instance-metadata lookups, no telemetry. `sam build` needs the
# Lambda runtime's Python on PATH, so the runtime's interpreter is put first when one can be found.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if runtime_python="$("$here/tools/runtime-python.sh" 2>/dev/null)"; then
  export PATH="$(dirname "$runtime_python"):$PATH"
fi
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}"
export AWS_REGION="${AWS_REGION:-$AWS_DEFAULT_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
export SAM_CLI_CONTACT_TRACKING=0
exec "$here/.tools/sam/bin/sam" "$@"
