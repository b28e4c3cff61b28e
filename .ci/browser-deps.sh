#!/usr/bin/env bash
# Installs what the node-driven tests need (the dashboard's browser tests,
# tests/it/browser.rs; the OpenAPI tool checks, tests/it/openapi_tools.rs), only
# where it is missing: Debian's Chromium (apt) and Playwright's core library
# (npm ci in tests/browser). Playwright never downloads a browser here: the
# tests drive /usr/bin/chromium. Running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "== apt-get install chromium"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "the browser tests need node 20+ and npm on PATH" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "the browser tests need node 20+ (found $(node --version))" >&2
  exit 1
fi

# npm ci again only when the lock file is newer than the installed tree.
installed=tests/browser/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/browser/package-lock.json -nt "$installed" ]; then
  echo "== npm ci (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

# The OpenAPI linters and type generator (tests/it/openapi_tools.rs), pinned
# in tests/openapi/package.json, likewise only when the lock file changed.
installed=tests/openapi/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/openapi/package-lock.json -nt "$installed" ]; then
  echo "== npm ci (tests/openapi)"
  (cd tests/openapi && npm ci --no-audit --no-fund)
fi
