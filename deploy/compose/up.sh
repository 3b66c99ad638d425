#!/usr/bin/env bash
# `make up`: the compose topology (docker-compose.yml beside this file), started
# and waited for until every container is healthy; then the URLs and how long
# it took. On a failure it shows the logs of what did not come up, leaves the
# rest running for a look, and exits 1 (`make down` removes it all).
#
#   1. the images, built only if one is missing (deploy/images/build.sh
#      --if-missing; `make images` rebuilds stale ones);
#   2. the credentials, made once (secrets.sh);
#   3. docker-compose -p strata -f deploy/compose/docker-compose.yml up -d;
#   4. every container polled with `docker inspect` until all are healthy, or
#      one exits, turns unhealthy, restarts, or the deadline passes.
#
# Settings: STRATA_UP_TIMEOUT_SECS (240), STRATA_ADMIN_EMAIL (admin@strata.dev),
# STRATA_ADMIN_PASSWORD (default: a generated one; secrets.sh), and whatever
# docker-compose.yml reads from the environment (its header lists them).
# STRATA_COMPOSE_OVERRIDE: a further compose file, given after the first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf 'up: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

started=$(now)
readonly timeout_secs=${STRATA_UP_TIMEOUT_SECS:-240}
compose=(docker-compose -p strata -f deploy/compose/docker-compose.yml)
[ -z "${STRATA_COMPOSE_OVERRIDE:-}" ] || compose+=(-f "$STRATA_COMPOSE_OVERRIDE")

command -v docker-compose >/dev/null ||
    { say "error: docker-compose is not installed (make up installs Debian's)"; exit 1; }

bash deploy/images/build.sh --if-missing
STRATA_POSTGRES_IMAGE=$(bash docker/postgres/ensure-image.sh)
export STRATA_POSTGRES_IMAGE
images_done=$(since "$started")

bash deploy/compose/secrets.sh
export STRATA_ADMIN_EMAIL=${STRATA_ADMIN_EMAIL:-admin@strata.dev}
if [ -z "${STRATA_ADMIN_PASSWORD:-}" ]; then
    # shellcheck disable=SC2016 # printed for the user to run, not expanded here
    export_password='export STRATA_ADMIN_PASSWORD="$(cat deploy/compose/secrets/admin_password)"'
else
    export_password="# STRATA_ADMIN_PASSWORD: the one you exported (now in deploy/compose/secrets/admin_password)"
fi

up_started=$(now)
"${compose[@]}" up -d --remove-orphans

# --- wait until healthy ------------------------------------------------------------
mapfile -t services < <("${compose[@]}" config --services)
deadline=$((SECONDS + timeout_secs))
last=""
while :; do
    ready=0 waiting=() failed=()
    for service in "${services[@]}"; do
        id=$("${compose[@]}" ps -q "$service" 2>/dev/null || true)
        if [ -z "$id" ]; then
            waiting+=("$service(not created)")
            continue
        fi
        # state, health (none without a HEALTHCHECK), restarts
        read -r state health restarts < <(docker inspect --format \
            '{{ .State.Status }} {{ if .State.Health }}{{ .State.Health.Status }}{{ else }}none{{ end }} {{ .RestartCount }}' "$id")
        if [ "$state" = exited ] || [ "$state" = dead ] || [ "$restarts" -gt 0 ] || [ "$health" = unhealthy ]; then
            failed+=("$service($state, $health, restarted $restarts times)")
        elif [ "$state" = running ] && { [ "$health" = healthy ] || [ "$health" = none ]; }; then
            ready=$((ready + 1))
        else
            waiting+=("$service($health)")
        fi
    done
    if [ "${#failed[@]}" -gt 0 ] || [ "$SECONDS" -ge "$deadline" ]; then
        if [ "${#failed[@]}" -gt 0 ]; then
            say "error: not coming up: ${failed[*]}"
        else
            say "error: not healthy after ${timeout_secs} s: ${waiting[*]}"
        fi
        for entry in "${failed[@]}" "${waiting[@]}"; do
            service=${entry%%(*}
            say "--- last lines of $service ---"
            "${compose[@]}" logs --no-color --tail=25 "$service" >&2 || true
        done
        say "the topology is left running for a look; make down removes it"
        exit 1
    fi
    [ "$ready" -eq "${#services[@]}" ] && break
    line="healthy $ready/${#services[@]}; waiting for ${waiting[*]}"
    [ "$line" = "$last" ] || say "$line"
    last=$line
    sleep 0.5
done

publish=${STRATA_PUBLISH_ADDR:-127.0.0.1}
cat <<EOF

Strata is up (docker-compose project "strata", ${#services[@]} containers healthy) in $(since "$started") s:
images ready after ${images_done} s, then healthy $(since "$up_started") s after \`docker-compose up\` began.

  storefront   http://$publish:8080   (HAProxy, 2 replicas, each client kept on one)
  backoffice   http://$publish:8081   (staff: $STRATA_ADMIN_EMAIL, password in deploy/compose/secrets/admin_password)

The demo against it:
  export STRATA_ADMIN_EMAIL=$STRATA_ADMIN_EMAIL
  $export_password
  make demo

Logs: docker-compose -p strata -f deploy/compose/docker-compose.yml logs -f [service]
Stop and remove everything, volumes included: make down
EOF
