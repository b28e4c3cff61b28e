#!/usr/bin/env bash
# A PostgreSQL for the tests, idempotently: installs Debian's `postgresql`
# package only when its programs are missing, creates and starts a cluster
# only when nothing answers on the port, creates the role and database only
# when missing, then prints the database URL (and nothing else) on stdout.
#
#   export TUNESERVE_TEST_DATABASE_URL="$(bash .ci/postgres.sh)"
#
# The role may create databases: each PostgreSQL test runs in a database of
# its own and drops it afterwards. Settings (defaults in brackets):
# TUNESERVE_PG_PORT [5432], TUNESERVE_PG_USER [tuneserve],
# TUNESERVE_PG_PASSWORD [tuneserve], TUNESERVE_PG_DATABASE [tuneserve_test].
set -euo pipefail

port="${TUNESERVE_PG_PORT:-5432}"
user="${TUNESERVE_PG_USER:-tuneserve}"
password="${TUNESERVE_PG_PASSWORD:-tuneserve}"
database="${TUNESERVE_PG_DATABASE:-tuneserve_test}"

log() { echo "postgres.sh: $*" >&2; }

# Root runs commands as they are; anyone else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# psql as the cluster's superuser, over the local socket (peer auth).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

answers() {
    pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null
}

install_if_missing() {
    if command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        return
    fi
    log "installing postgresql"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
}

start_cluster() {
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
        log "creating cluster $version/main on port $port"
        as_root pg_createcluster --port "$port" "$version" main >&2
    fi
    log "starting cluster $version/main"
    as_root pg_ctlcluster "$version" main start >&2 || true
    for _ in $(seq 1 50); do
        answers && return
        sleep 0.2
    done
    log "PostgreSQL does not answer on port $port"
    exit 1
}

ensure_role_and_database() {
    local sql
    sql="$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'")"
    if [ "$sql" != 1 ]; then
        log "creating role $user"
        as_postgres psql -p "$port" -q -c "CREATE ROLE \"$user\" LOGIN CREATEDB PASSWORD '$password'" >&2
    fi
    sql="$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'")"
    if [ "$sql" != 1 ]; then
        log "creating database $database"
        as_postgres psql -p "$port" -q -c "CREATE DATABASE \"$database\" OWNER \"$user\"" >&2
    fi
}

install_if_missing
answers || start_cluster
ensure_role_and_database
echo "postgres://$user:$password@127.0.0.1:$port/$database"
