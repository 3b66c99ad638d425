# shellcheck shell=bash
# One database per context, each owned by a role of its own whose password is
# that context's secret file: a data service hosting catalog and inventory holds
# those two passwords, and no role may connect to another context's database.
#
# Sourced (not executed: no x bit) by the image's entrypoint on the first start
# only, as the postgres user, while a temporary server listens on the socket
# alone. psql reads each password from its file itself (`\set … \`cat …\``), so
# no password is on a command line.
# psql_cmd: the entrypoint's psql on the socket, as the superuser.
# shellcheck disable=SC2154
"${psql_cmd[@]}" --dbname postgres <<'EOSQL'
REVOKE ALL ON DATABASE postgres FROM PUBLIC;

\set password `cat /run/secrets/catalog_db_password`
CREATE ROLE catalog LOGIN PASSWORD :'password';
CREATE DATABASE catalog OWNER catalog;
REVOKE ALL ON DATABASE catalog FROM PUBLIC;

\set password `cat /run/secrets/inventory_db_password`
CREATE ROLE inventory LOGIN PASSWORD :'password';
CREATE DATABASE inventory OWNER inventory;
REVOKE ALL ON DATABASE inventory FROM PUBLIC;

\set password `cat /run/secrets/ordering_db_password`
CREATE ROLE ordering LOGIN PASSWORD :'password';
CREATE DATABASE ordering OWNER ordering;
REVOKE ALL ON DATABASE ordering FROM PUBLIC;

\set password `cat /run/secrets/identity_db_password`
CREATE ROLE identity LOGIN PASSWORD :'password';
CREATE DATABASE identity OWNER identity;
REVOKE ALL ON DATABASE identity FROM PUBLIC;

\unset password
EOSQL
echo "created the databases catalog, inventory, ordering and identity, each owned by its own role"

# initdb is done: the server that is about to start needs no password.
unset POSTGRES_PASSWORD
