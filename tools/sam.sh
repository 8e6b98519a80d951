#!/usr/bin/env bash
# Runs the SAM CLI from its own tool environment (it pins its own boto3 and pydantic). `sam build`
# needs the Lambda runtime's Python on PATH, so the runtime's interpreter is put first when one can
# be found. Offline commands (validate, build) get a region and dummy credentials, so they run on a
# machine with no AWS account; every other command (deploy, delete, logs, ...) runs as the caller's
# own AWS identity, never as the dummy one: environment credentials beat profiles and SSO.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if runtime_python="$("$here/tools/runtime-python.sh" 2>/dev/null)"; then
  export PATH="$(dirname "$runtime_python"):$PATH"
fi
export SAM_CLI_TELEMETRY=0
export SAM_CLI_CONTACT_TRACKING=0
case "${1:-}" in
  validate | build | --version | --help | -h | "")
    export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}"
    export AWS_REGION="${AWS_REGION:-$AWS_DEFAULT_REGION}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
    export AWS_EC2_METADATA_DISABLED=true
    ;;
  *)
    # Resolved as the SAM CLI will resolve them (environment, profile, SSO, instance role), without
    # calling AWS: a missing credential is named here instead of deep in a deploy's traceback.
    if ! "$here/.tools/sam/bin/python" -c 'import boto3, sys; sys.exit(boto3.Session().get_credentials() is None)'; then
      echo "sam $1: no AWS credentials found. Set AWS_PROFILE to a profile from 'aws configure' or" \
        "'aws configure sso' (then 'aws sso login'), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY." >&2
      exit 2
    fi
    ;;
esac
# SAM_CLI runs another SAM CLI through this wrapper (your own `sam`, with the same credential rules).
exec "${SAM_CLI:-$here/.tools/sam/bin/sam}" "$@"
