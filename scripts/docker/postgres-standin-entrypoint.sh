#!/bin/sh
# The stand-in PostgreSQL image's entrypoint (postgres-standin.Dockerfile):
# on an empty data folder, initdb with POSTGRES_USER / POSTGRES_PASSWORD
# (password logins over TCP) and create POSTGRES_DB; then run the command.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -n "${POSTGRES_PASSWORD:-}" ] || { echo "POSTGRES_PASSWORD is not set" >&2; exit 1; }
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # A first start on the socket only, to create the database.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /tmp" start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        createdb -h /tmp -U "$POSTGRES_USER" "$POSTGRES_DB"
    fi
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    echo "initialised $PGDATA: user $POSTGRES_USER, database $POSTGRES_DB"
fi
if [ "${1:-}" = postgres ]; then
    shift
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
