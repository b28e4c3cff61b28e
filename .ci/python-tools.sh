#!/usr/bin/env bash
# Creates the Python venv the contract and protocol tests (tests/it/contract.rs,
# tests/it/protocol_*.rs) use: openapi-spec-validator, schemathesis,
# openapi-python-client, huggingface_hub and openai from PyPI at the
# versions .ci/python-requirements.txt pins, in target/ci-venv (or
# $TUNESERVE_PYTHON_TOOLS when set). Prints the venv's path as its last line.
# Running it again installs nothing unless the requirements changed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash .ci/venv.sh .ci/python-requirements.txt "${TUNESERVE_PYTHON_TOOLS:-$PWD/target/ci-venv}" "contract tests"
