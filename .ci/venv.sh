#!/usr/bin/env bash
# A Python venv at VENV holding REQUIREMENTS exactly, made or remade only when
# the requirements file differs from the one it was made with; prints VENV as
# its last line. WHAT names the tests that need it, for the error message.
#
#   bash .ci/venv.sh REQUIREMENTS VENV WHAT
#
# Used by .ci/python-tools.sh and .ci/integration-tools.sh.
set -euo pipefail
requirements=$1 venv=$2 what=$3
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "the $what need Python 3.10+ with venv as \`$python\` (or set PYTHON)" >&2
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
