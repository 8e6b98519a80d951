#!/usr/bin/env bash
# Prints the path of the Lambda runtime's Python (python3.13, the template's Runtime), from PATH or
# pyenv; fails when there is none. `sam build` needs it on PATH, and the build's bytecode must be
# compiled by it (a .pyc is only read by the Python version that wrote it).
set -euo pipefail
version="3.13"
# A pyenv shim may exist for an inactive version and fail when run: test that it really runs.
if "python$version" -c "" >/dev/null 2>&1; then
  command -v "python$version"
elif command -v pyenv >/dev/null 2>&1 && prefix="$(pyenv prefix "$version" 2>/dev/null || pyenv prefix "$version.0" 2>/dev/null)"; then
  echo "$prefix/bin/python$version"
else
  echo "no python$version found (on PATH or in pyenv): the Lambda runtime's Python is needed to build" >&2
  exit 1
fi
