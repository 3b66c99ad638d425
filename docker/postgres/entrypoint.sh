#!/bin/bash
# Entrypoint of the locally built strata-postgres:15 image (see ensure-image.sh).
#
# Behaves like the official postgres image's docker-entrypoint.sh for what the
# Strata tests (testcontainers-modules' Postgres module) rely on:
#   POSTGRES_USER               superuser to create (default: postgres)
#   POSTGRES_PASSWORD           its password (required unless auth method is trust)
#   POSTGRES_DB                 database to create (default: $POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD   pg_hba method for remote hosts
#                               (default: scram-sha-256)
#   POSTGRES_INITDB_ARGS        extra initdb arguments (word-split)
#   PGDATA                      data directory (default: /var/lib/postgresql/data)
#
# On first start (empty PGDATA) it runs initdb, starts a temporary server on the
# unix socket only (its log goes to STDOUT), creates the database, runs
# /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}, stops the temporary server and
# finally execs the real server (its log goes to STDERR). So the line
# "database system is ready to accept connections" appears once on stdout and
# once on stderr, exactly like the official image.
#
# Arguments: if the first one starts with '-' (e.g. `-c fsync=off`) they are
# server options; if the first one is `postgres` it is dropped and the rest are
# server options; anything else is exec'ed as a command (e.g. `bash`).
set -Eeo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
case ":$PATH:" in
    *":$PG_BIN:"*) ;;
    *) PATH="$PG_BIN:$PATH" ;;
esac
export PATH
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
SOCKET_DIR=/var/run/postgresql

log() { printf '%s\n' "$*"; }
die() { printf 'strata-postgres entrypoint: error: %s\n' "$*" >&2; exit 1; }

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi
shift # drop "postgres"; what is left are server options

# --- as root: prepare directories, then re-exec this script as `postgres` -----
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    chown postgres:postgres "$PGDATA" "$SOCKET_DIR"
    chmod 0700 "$PGDATA"
    chmod 3777 "$SOCKET_DIR"
    export HOME=/var/lib/postgresql
    if command -v setpriv >/dev/null 2>&1; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" postgres "$@"
    elif command -v runuser >/dev/null 2>&1; then
        exec runuser -u postgres -- "$0" postgres "$@"
    else
        die "neither setpriv nor runuser found to drop privileges"
    fi
fi

# --- as the postgres user -----------------------------------------------------
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -w "$PGDATA" ] || mkdir -p "$PGDATA" 2>/dev/null || die "$PGDATA is not writable by uid $(id -u)"

    POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        die "Database is uninitialized and superuser password is not specified.
  Set POSTGRES_PASSWORD to a non-empty value for the superuser, or set
  POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password."
    fi

    # Bootstrap superuser = POSTGRES_USER, with its password (like the official image).
    initdb_args=(--username="$POSTGRES_USER")
    pwfile=
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile="$(mktemp)"
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        initdb_args+=(--pwfile="$pwfile")
    fi
    # shellcheck disable=SC2086 # word splitting of POSTGRES_INITDB_ARGS is intended
    initdb -D "$PGDATA" "${initdb_args[@]}" ${POSTGRES_INITDB_ARGS:-}
    [ -z "$pwfile" ] || rm -f "$pwfile"

    {
        printf '\n# added by the strata-postgres entrypoint\n'
        printf "listen_addresses = '*'\n"
    } >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # Temporary server: unix socket only. Without -l, pg_ctl runs the server
    # with `2>&1`, so its log (incl. the "ready" line) goes to our STDOUT.
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" \
        -o "$(printf '%q ' "$@" -c listen_addresses='' -c "unix_socket_directories=$SOCKET_DIR" -p 5432)" \
        -w start

    psql_cmd=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password
              --host "$SOCKET_DIR" --port 5432 --username "$POSTGRES_USER")

    "${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
SELECT 'CREATE DATABASE ' || quote_ident(:'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
EOSQL

    if [ -d /docker-entrypoint-initdb.d ]; then
        for f in /docker-entrypoint-initdb.d/*; do
            [ -f "$f" ] || continue
            case "$f" in
                *.sh)
                    if [ -x "$f" ]; then log "running $f"; "$f"
                    else log "sourcing $f"; # shellcheck disable=SC1090
                        . "$f"
                    fi ;;
                *.sql) log "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f"; echo ;;
                *.sql.gz) log "running $f"; gzip -dc "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB"; echo ;;
                *) log "ignoring $f" ;;
            esac
        done
    fi

    pg_ctl -D "$PGDATA" -m fast -w stop
    unset pwfile initdb_args psql_cmd
    log
    log 'PostgreSQL init process complete; ready for start up.'
    log
else
    log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
    log
fi

# Final server: logs to STDERR (default, no logging collector). exec => it gets
# the container's signals directly. The image sets STOPSIGNAL SIGINT (fast
# shutdown), like the official image; a plain SIGTERM is a "smart" shutdown,
# which waits for connected clients to disconnect.
exec postgres "$@"
