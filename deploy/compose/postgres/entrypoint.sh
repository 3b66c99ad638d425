#!/bin/bash
# The compose topology's PostgreSQL entrypoint: the image's own
# (docker/postgres/entrypoint.sh), with the superuser's password read from the
# secret file /run/secrets/postgres_password instead of given in the
# environment. The image's entrypoint needs it as POSTGRES_PASSWORD for initdb
# on the first start only (an empty PGDATA); 10-contexts.sh, run by it before
# the server starts for real, unsets it again. On later starts it is not read.
set -Eeo pipefail
if [ ! -s "${PGDATA:-/var/lib/postgresql/data}/PG_VERSION" ]; then
    POSTGRES_PASSWORD=$(< /run/secrets/postgres_password)
    export POSTGRES_PASSWORD
fi
exec /usr/local/bin/docker-entrypoint.sh "$@"
