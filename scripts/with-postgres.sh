#!/usr/bin/env bash
# Runs "$@" with TEST_DATABASE_URL pointing at a PostgreSQL 15 server.
# Uses TEST_DATABASE_URL if it already answers; otherwise starts a throwaway
# cluster (initdb into a temp dir, as the `postgres` user when we are root,
# because postgres refuses to run as root) and stops it afterwards.
set -euo pipefail

if [[ -n "${TEST_DATABASE_URL:-}" ]] && psql "$TEST_DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  exec "$@"
fi
# A server already listening on the default port (with trust auth) will do.
DEFAULT_URL="postgres://postgres@127.0.0.1:5432/postgres"
if psql "$DEFAULT_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  export TEST_DATABASE_URL="$DEFAULT_URL"
  echo "with-postgres: using the PostgreSQL already listening on 127.0.0.1:5432" >&2
  exec "$@"
fi

PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
if [[ -z "$PGBIN" || ! -x "$PGBIN/initdb" ]]; then
  echo "with-postgres: no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin)" >&2
  exit 1
fi

PGPORT="${PGPORT:-55432}"
PGDATA_DIR="$(mktemp -d /tmp/dirtfree-pg.XXXXXX)"
RUN_AS=()
if [[ "$(id -u)" == "0" ]]; then
  chown postgres "$PGDATA_DIR"
  RUN_AS=(runuser -u postgres --)
fi

cleanup() {
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDATA_DIR"
}
trap cleanup EXIT

"${RUN_AS[@]}" "$PGBIN/initdb" -D "$PGDATA_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
# fsync stays on: the crash tests rely on durable commits.
"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/log" -w \
  -o "-p $PGPORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" start >/dev/null

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "with-postgres: throwaway PostgreSQL on port $PGPORT ($PGDATA_DIR)" >&2
"$@"
