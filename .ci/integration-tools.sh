#!/usr/bin/env bash
# Creates the Python venv the integration tests (tests/it/integrations_*.rs)
# use: mlflow (its tracking server and Python client) and standardwebhooks,
# at the versions .ci/integration-requirements.txt pins, in
# target/integration-venv (or $TUNESERVE_INTEGRATION_TOOLS when set). A venv
# of its own: mlflow's dependencies are many and need not agree with the
# contract tests' pins. Prints the venv's path as its last line. Running it
# again installs nothing unless the requirements changed (pip's cache makes a
# re-install after a change quick).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash .ci/venv.sh .ci/integration-requirements.txt "${TUNESERVE_INTEGRATION_TOOLS:-$PWD/target/integration-venv}" "integration tests"
