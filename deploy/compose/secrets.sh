#!/usr/bin/env bash
# Makes the compose topology's credentials, each in a file of its own under
# deploy/compose/secrets/ (kept out of git), once: a file that exists is kept.
# docker-compose mounts them read-only at /run/secrets/<name> in the services
# that list them, and the processes read them through *_FILE settings: they
# are never in an image, in the containers' environment, or on a command line.
#
#   storefront_token       the storefront's credential at the data services (scoped
#                          to what it calls: services/data-service/src/callers.rs)
#   backoffice_token       backoffice's credential at the data services
#   jwt_secret             the edges' JWT signing key
#   postgres_password      PostgreSQL's superuser (nothing in the topology uses it)
#   <context>_db_password  the role that owns that context's database (PostgreSQL
#                          reads it at its first start)
#   <context>_database_url that context's URL, password included, made from the
#                          above (the data services read it: *_DATABASE_URL_FILE)
#   admin_password         the backoffice's first staff account; STRATA_ADMIN_PASSWORD,
#                          when set here, is written into it (so that `make demo`
#                          with the same variable signs in)
#
# Each generated one is 40 random letters and digits, with no newline. The
# directory is readable by you alone (0700); the files in it are 0644, because
# the containers read them as their own uids (65532, and PostgreSQL's) through
# the bind mount, which needs no access to the directory.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"
umask 022

contexts=(catalog inventory ordering identity)

make_random() {
    local file=$1
    [ ! -s "$file" ] || return 0
    # (tr ends on SIGPIPE once head has its 40: not a failure here.)
    (set +o pipefail; LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40 >"$file")
    [ "$(wc -c <"$file")" -eq 40 ] || { echo "secrets: could not make $file" >&2; rm -f "$file"; exit 1; }
    echo "secrets: made $file" >&2
}

for name in storefront_token backoffice_token jwt_secret postgres_password admin_password; do
    make_random "$dir/$name"
done
if [ -n "${STRATA_ADMIN_PASSWORD:-}" ] && [ "$STRATA_ADMIN_PASSWORD" != "$(cat "$dir/admin_password")" ]; then
    printf '%s' "$STRATA_ADMIN_PASSWORD" >"$dir/admin_password"
    echo "secrets: admin_password is now your STRATA_ADMIN_PASSWORD" >&2
fi
for context in "${contexts[@]}"; do
    make_random "$dir/${context}_db_password"
    # Letters and digits only: nothing in the password needs escaping in a URL.
    printf 'postgres://%s:%s@postgres:5432/%s' "$context" "$(cat "$dir/${context}_db_password")" "$context" \
        >"$dir/${context}_database_url"
done
chmod 0644 "$dir"/*
# Made by an earlier version: one token for every caller, no longer used.
rm -f "$dir/service_token"
