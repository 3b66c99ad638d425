#!/usr/bin/env bash
# The whole shop from one command (`make run`): the data service (every context
# on embedded SQLite in ./var), then storefront and backoffice in dev mode.
# Ctrl-C or SIGTERM stops the application services, then the data service, and
# exits 0; if any part exits by itself, the others are stopped and this fails
# naming it.
#
# Each part's stdout goes to var/log/<part>.log (shown here through `tail -f`),
# which is where its ready line is looked for; stderr (the logs) is the
# terminal's. Settings: DATA_SERVICE_ARGS, STOREFRONT_ARGS, BACKOFFICE_ARGS
# (extra arguments, word-split), CARGO, CARGO_TARGET_DIR, STRATA_BIN_DIR (where
# the binaries are; default $CARGO_TARGET_DIR/debug), STRATA_*_ADDR (where the
# application services find each context; default this data service),
# STRATA_DATA_DIR (default ./var), STRATA_LISTEN and
# STRATA_{STOREFRONT,BACKOFFICE}_LISTEN (default :50051, :8080, :8081).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What this writes under ./var (databases, logs, dev secrets) is the
# user's alone.
umask 077

readonly start_timeout_secs=60 stop_timeout_secs=20
readonly data_dir=${STRATA_DATA_DIR:-./var}
readonly log_dir=$data_dir/log

# The same build as `make test` (every binary of the workspace), so neither
# undoes the other's.
"${CARGO:-cargo}" build --locked --workspace --bins
bin_dir=${STRATA_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
mkdir -p "$log_dir"

names=() pids=()

fail() { echo "run.sh: $*" >&2; exit 1; }

# Sends SIGTERM to the given parts and waits for them (SIGKILL after
# stop_timeout_secs: a stuck drain must not keep Ctrl-C from returning).
stop() {
  local pid deadline=$((SECONDS + stop_timeout_secs))
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# On every exit: the application services first, then the data service, then
# what is left (the tails that show their stdout, a poll's sleep).
stop_all() {
  trap '' INT TERM
  ((${#pids[@]} > 1)) && stop "${pids[@]:1}"
  ((${#pids[@]} > 0)) && stop "${pids[0]}"
  local rest
  rest=$(jobs -p)
  # shellcheck disable=SC2086 # one pid a word
  [[ -z "$rest" ]] || { kill $rest 2>/dev/null || true; wait $rest 2>/dev/null || true; }
  return 0
}
trap stop_all EXIT
trap 'echo; echo "run.sh: stopping"; exit 0' INT TERM

# start NAME ARGS...: starts $bin_dir/NAME with stdout to its log, waits for
# its line "NAME listening on ADDRESS ..." and sets `address` to ADDRESS.
# setsid keeps the terminal's Ctrl-C from reaching it, so that this script
# alone decides the order in which the parts stop.
start() {
  local name=$1 log="$log_dir/$1.log" pid status line
  shift
  [[ -x "$bin_dir/$name" ]] || fail "$bin_dir/$name is not an executable (set STRATA_BIN_DIR?)"
  : >"$log"
  if command -v setsid >/dev/null; then
    setsid "$bin_dir/$name" "$@" </dev/null >"$log" &
  else
    "$bin_dir/$name" "$@" </dev/null >"$log" &
  fi
  pid=$!
  names+=("$name") pids+=("$pid")
  tail -n +1 -f "$log" &
  local deadline=$((SECONDS + start_timeout_secs))
  until line=$(grep -m 1 "^$name listening on " "$log"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      status=0; wait "$pid" || status=$?
      fail "$name exited with status $status before it was ready (its output is above and in $log)"
    fi
    ((SECONDS < deadline)) || fail "$name did not print '$name listening on …' within ${start_timeout_secs}s"
    sleep 0.1
  done
  line=${line#"$name listening on "}
  address=${line%% *}
}

# shellcheck disable=SC2086 # the *_ARGS are word-split on purpose
{
  # The dev staff email is reserved in identity before anything serves, so
  # no shopper can take it first.
  STRATA_IDENTITY_RESERVED_EMAILS=${STRATA_IDENTITY_RESERVED_EMAILS:-admin@strata.dev} \
    start data-service --listen "${STRATA_LISTEN:-127.0.0.1:50051}" --data-dir "$data_dir" ${DATA_SERVICE_ARGS:-}
  data_service_url=http://$address
  export STRATA_CATALOG_ADDR=${STRATA_CATALOG_ADDR:-$data_service_url}
  export STRATA_INVENTORY_ADDR=${STRATA_INVENTORY_ADDR:-$data_service_url}
  export STRATA_ORDERING_ADDR=${STRATA_ORDERING_ADDR:-$data_service_url}
  export STRATA_IDENTITY_ADDR=${STRATA_IDENTITY_ADDR:-$data_service_url}
  start storefront --dev --data-dir "$data_dir" ${STOREFRONT_ARGS:-}
  storefront_url=$address
  start backoffice --dev --data-dir "$data_dir" ${BACKOFFICE_ARGS:-}
  backoffice_url=$address
}

cat <<EOF

Strata is running:
  storefront    $storefront_url
  backoffice    $backoffice_url   (dev staff account: kept in $data_dir/dev-admin.json, readable by you alone)
  data service  $data_service_url (gRPC)
Try the shop with \`make demo\` in another terminal. Ctrl-C stops everything.

EOF

# Until a signal (the trap above) or a part that exits by itself.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      status=0; wait "${pids[i]}" || status=$?
      fail "${names[i]} exited by itself (status $status); stopping the others"
    fi
  done
  sleep 0.5 &
  wait $! || true
done
