#!/usr/bin/env bash
# The API fuzzer against the shop's own OpenAPI documents (`make test-fuzz`,
# part of `make test`): the real binaries on loopback (a data service on
# SQLite in a scratch directory, storefront and backoffice in dev mode with
# their rate limits raised), then schemathesis (PyPI, pinned, in .tools/)
# with every check, against each document, signed in (a shopper at the
# storefront, the dev staff account at backoffice). Bounded: FUZZ_EXAMPLES
# cases per operation and phase (default 25) and FUZZ_TIMEOUT seconds per
# document (default 300). Exits non-zero on any failure, printing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly version=4.32.5 examples=${FUZZ_EXAMPLES:-25} per_document=${FUZZ_TIMEOUT:-300}
readonly venv=.tools/schemathesis-$version bin_dir=${STRATA_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
if [[ ! -x $venv/bin/schemathesis ]]; then
  rm -rf .tools/schemathesis-*
  echo "installing schemathesis $version (PyPI) into $venv"
  python3 -m venv "$venv" >/dev/null
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" || { rm -rf "$venv"; exit 1; }
fi

scratch=$(mktemp -d)
umask 077
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

# start NAME ARGS...: starts NAME, waits for "NAME listening on ADDRESS", sets `address`.
start() {
  local name=$1 log="$scratch/$1.log"
  shift
  env -u STRATA_SERVICE_TOKEN "$bin_dir/$name" "$@" >"$log" 2>"$scratch/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if line=$(grep -m 1 "^$name listening on " "$log"); then
      line=${line#"$name listening on "}
      address=${line%% *}
      return
    fi
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$scratch/$name.err" >&2; echo "$name exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name did not start" >&2
  exit 1
}

unlimited=(--rate-limit-per-sec 1000000 --rate-limit-burst 1000000 --sign-in-per-minute 1000000
  --listen 127.0.0.1:0 --dev --data-dir "$scratch")
start data-service --listen 127.0.0.1:0 --data-dir "$scratch"
export STRATA_CATALOG_ADDR=http://$address STRATA_INVENTORY_ADDR=http://$address \
  STRATA_ORDERING_ADDR=http://$address STRATA_IDENTITY_ADDR=http://$address
start storefront "${unlimited[@]}" --max-open-orders 500
storefront=$address
start backoffice "${unlimited[@]}"
backoffice=${address#http://}
storefront=${storefront#http://}

token() { python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
email="fuzz-$(date +%s%N)@shop.test"
curl -sf "http://$storefront/v1/accounts" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"a fuzzing password\",\"display_name\":\"Fuzz\"}" >/dev/null
shopper=$(curl -sf "http://$storefront/v1/sessions" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"a fuzzing password\"}" | token)
for _ in $(seq 1 100); do [[ -s $scratch/dev-admin.json ]] && break; sleep 0.1; done
staff=""
for _ in $(seq 1 100); do
  staff=$(curl -s "http://$backoffice/v1/sessions" -H 'content-type: application/json' -d @"$scratch/dev-admin.json" | token 2>/dev/null) && break
  sleep 0.2
done
[[ -n $staff ]] || { echo "cannot sign in the dev staff account" >&2; exit 1; }

failed=0
fuzz() {
  local name=$1 address=$2 token=$3
  echo "== schemathesis: $name (http://$address/openapi.json)"
  if ! timeout "$per_document" "$venv/bin/schemathesis" --no-color --config-file scripts/fuzz/schemathesis.toml \
      run "http://$address/openapi.json" --checks all --max-examples "$examples" \
      --workers 1 --request-timeout 10 --generation-deterministic \
      -H "Authorization: Bearer $token" >"$scratch/$name.fuzz" 2>&1; then
    failed=1
    cat "$scratch/$name.fuzz"
  fi
  grep -E "generated|passed|failed" "$scratch/$name.fuzz" | sed "s/^/  $name: /" | tail -3
}
fuzz storefront "$storefront" "$shopper"
fuzz backoffice "$backoffice" "$staff"
if ((failed)); then
  echo "fuzzing found failures (above)"
  exit 1
fi
echo "fuzzing: both documents, no failure"
