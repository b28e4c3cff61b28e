#!/usr/bin/env bash
# Creates the Python venv the contract and protocol tests (tests/it/contract.rs,
# tests/it/protocol_*.rs) use: openapi-spec-validator, schemathesis,
# openapi-python-client, huggingface_hub and openai from PyPI at the
# versions .ci/python-requirements.txt pins, in target/ci-venv (or
# $TUNESERVE_PYTHON_TOOLS when set). Prints the venv's path as its last line.
# Running it again installs nothing unless the requirements changed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TUNESERVE_PYTHON_TOOLS:-$PWD/target/ci-venv}
requirements=.ci/python-requirements.txt
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "the contract tests need Python 3.10+ with venv as \`$python\` (or set PYTHON)" >&2
  exit 1
fi

stamp=$venv/.requirements
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "== python venv at $venv ($requirements)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
echo "$venv"
