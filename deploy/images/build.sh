#!/usr/bin/env bash
# `make images`: the OCI images of the topology, built on this machine with no
# registry (nothing is pulled).
#
#   strata/data-service, strata/storefront, strata/backoffice
#       FROM scratch: the release binary, the shared libraries `ldd` lists for
#       it, the dynamic loader, and nothing else (no shell). uid/gid 65532,
#       read-only root friendly, a HEALTHCHECK in exec form (`<binary> health`).
#       Tagged with the commit (`git rev-parse --short HEAD`, with `-dirty`
#       appended when the sources differ from it) and `latest`.
#   strata-etcd:3.4, strata-haproxy:2.6
#       the same way, from Debian's packages (deploy/images/{etcd,haproxy}).
#   strata-postgres:15
#       docker/postgres/ensure-image.sh.
#
# Only what is missing or stale is built: cargo builds incrementally, and an
# application image is built again only when its staged context (binary,
# libraries, Dockerfile) hashes differently from the image's label
# org.strata.context-sha256. The infrastructure images are built when missing.
#
# Usage: deploy/images/build.sh [--if-missing]
#   --if-missing  do nothing when every image exists (any commit's `latest`):
#                 what `make up` runs, so that starting the topology never
#                 waits on a release build it does not need.
# Settings: CARGO (cargo), CARGO_TARGET_DIR (target), STRATA_IMAGE_MAX_MIB (40).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf 'images: %s\n' "$*" >&2; }
# shellcheck source=deploy/images/lib.sh
. deploy/images/lib.sh

readonly apps=(data-service storefront backoffice)
readonly max_mib=${STRATA_IMAGE_MAX_MIB:-40}
target_dir=${CARGO_TARGET_DIR:-target}

docker info >/dev/null 2>&1 || { say "error: no Docker engine answers (docker info failed)"; exit 1; }

infra() {
    etcd_image=$(bash deploy/images/etcd/ensure-image.sh)
    haproxy_image=$(bash deploy/images/haproxy/ensure-image.sh)
    postgres_image=$(STRATA_POSTGRES_IMAGE='' bash docker/postgres/ensure-image.sh)
}

if_missing=false
case "${1:-}" in
    --if-missing) if_missing=true ;;
    "") ;;
    *) say "usage: $0 [--if-missing]"; exit 2 ;;
esac

started=$SECONDS
if $if_missing; then
    missing=()
    for app in "${apps[@]}"; do
        docker image inspect "strata/$app:latest" >/dev/null 2>&1 || missing+=("strata/$app")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        infra
        say "every image exists (make images rebuilds the stale ones)"
        exit 0
    fi
    say "missing: ${missing[*]}"
fi

# --- the binaries ---------------------------------------------------------------
say "${CARGO:-cargo} build --locked --release -p strata-data-service -p strata-storefront -p strata-backoffice"
"${CARGO:-cargo}" build --locked --release -p strata-data-service -p strata-storefront -p strata-backoffice

# The tag: the commit, marked -dirty when what the binaries are built from
# differs from it (tracked changes, or files git does not know yet).
revision=$(git rev-parse HEAD)
tag=$(git rev-parse --short HEAD)
sources=(Cargo.toml Cargo.lock .cargo domain services proto migrations)
existing=()
for path in "${sources[@]}"; do [ -e "$path" ] && existing+=("$path"); done
if ! git diff --quiet HEAD -- "${existing[@]}" ||
    [ -n "$(git ls-files --others --exclude-standard -- "${existing[@]}")" ]; then
    tag="$tag-dirty"
    say "warning: the sources differ from commit ${revision:0:12}; tagging :$tag"
fi

# --- one image per binary ---------------------------------------------------------
for app in "${apps[@]}"; do
    context="$target_dir/images/$app"
    rm -rf "$context"
    mkdir -p "$context/rootfs/tmp"
    chmod 1777 "$context/rootfs/tmp"
    # The edges' STRATA_DATA_DIR mount point (their Dockerfiles copy it, owned by 65532).
    [ "$app" = data-service ] || mkdir -p "$context/state"
    stage_elf "$context/rootfs" "$target_dir/release/$app" "/$app"
    # Line tables (profile.release keeps them for profiling) are of no use in
    # an image; symbols stay, so a panic's backtrace still names functions.
    objcopy --strip-debug "$context/rootfs/$app"
    cp "deploy/images/$app.Dockerfile" "$context/Dockerfile"
    hash=$(context_hash "$context")
    image="strata/$app"
    if [ "$(image_label "$image:$tag" org.strata.context-sha256)" = "$hash" ]; then
        say "$image:$tag is up to date"
    else
        say "building $image:$tag"
        DOCKER_BUILDKIT=0 docker build -q \
            --label "org.opencontainers.image.title=$image" \
            --label "org.opencontainers.image.revision=$revision" \
            --label "org.opencontainers.image.version=$tag" \
            --label "org.strata.context-sha256=$hash" \
            -t "$image:$tag" "$context" >/dev/null 2> >(grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e '^ *$' -e 'environment-variable' >&2)
    fi
    docker tag "$image:$tag" "$image:latest"
    # It starts as uid 65532 on a read-only root.
    version=$(docker run --rm --read-only --network none "$image:$tag" --version)
    [ "$(docker image inspect -f '{{ .Config.User }}' "$image:$tag")" = 65532:65532 ] ||
        { say "error: $image:$tag does not run as 65532:65532"; exit 1; }
    size=$(docker image inspect -f '{{ .Size }}' "$image:$tag")
    if [ "$size" -gt $((max_mib * 1024 * 1024)) ]; then
        say "error: $image:$tag is $(mib "$image:$tag"), more than $max_mib MiB"
        exit 1
    fi
    say "$image:$tag ($version): $(mib "$image:$tag")"
done

# --- the infrastructure -------------------------------------------------------------
infra

printf '\n%-22s %-24s %s\n' IMAGE TAGS SIZE
for app in "${apps[@]}"; do
    printf '%-22s %-24s %s\n' "strata/$app" "$tag, latest" "$(mib "strata/$app:$tag")"
done
for image in "$etcd_image" "$haproxy_image" "$postgres_image"; do
    printf '%-22s %-24s %s\n' "${image%:*}" "${image##*:}" "$(mib "$image")"
done
say "done in $((SECONDS - started)) s"
