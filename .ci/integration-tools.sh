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

venv=${TUNESERVE_INTEGRATION_TOOLS:-$PWD/target/integration-venv}
requirements=.ci/integration-requirements.txt
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "the integration tests need Python 3.10+ with venv as \`$python\` (or set PYTHON)" >&2
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
