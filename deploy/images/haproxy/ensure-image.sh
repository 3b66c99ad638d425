#!/usr/bin/env bash
# Make sure the load balancer image of the compose topology exists in the local
# Docker engine and print its reference (strata-haproxy:2.6) as the only line on
# stdout; everything else goes to stderr. Like docker/postgres/ensure-image.sh:
#
#   1. $STRATA_HAPROXY_IMAGE, if set (printed as is, nothing checked);
#   2. the local image strata-haproxy:2.6, if it exists;
#   3. otherwise build it, without any registry: Debian's haproxy and curl
#      packages and what they depend on are downloaded with apt from the
#      sources configured on this machine (nothing is installed), unpacked,
#      and /usr/sbin/haproxy and /usr/bin/curl (the health check: no shell)
#      are put with the libraries their loader lists into a FROM scratch
#      image (Dockerfile beside this script). The configuration is not in the
#      image: mount it at /usr/local/etc/haproxy/haproxy.cfg.
#
# Builds are serialised with flock (STRATA_HAPROXY_LOCK, default
# /tmp/strata-haproxy-image.lock): a concurrent caller waits, then reuses the
# image. Takes a few seconds once the packages are downloaded.
set -euo pipefail

exec 3>&1 1>&2

readonly image="strata-haproxy:2.6" major_minor="2.6"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock_file="${STRATA_HAPROXY_LOCK:-/tmp/strata-haproxy-image.lock}"

say() { printf 'haproxy image: %s\n' "$*" >&2; }
result() { printf '%s\n' "$1" >&3; exit 0; }
# shellcheck source=deploy/images/lib.sh
. "$script_dir/../lib.sh"

[ -z "${STRATA_HAPROXY_IMAGE:-}" ] || result "$STRATA_HAPROXY_IMAGE"
docker info >/dev/null 2>&1 || { say "error: no Docker engine answers (docker info failed)"; exit 1; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_exists "$image" && result "$image"

exec 9>>"$lock_file"
chmod 0666 "$lock_file" 2>/dev/null || true
if ! flock -n 9; then
    say "another build of $image is running; waiting for it"
    flock 9
fi
image_exists "$image" && result "$image"

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/strata-haproxy.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "downloading Debian's haproxy and curl"
download_debs "$work/debs" haproxy curl
version=$(deb_version "$work/debs" haproxy)
case "$version" in
    "$major_minor".*) ;;
    *) say "error: Debian's haproxy is $version, not $major_minor.x: update $0 and the compose file"; exit 1 ;;
esac
unpack_debs "$work/debs" "$work/packages"

context="$work/context"
mkdir -p "$context/rootfs/tmp" "$context/rootfs/usr/local/etc/haproxy"
chmod 1777 "$context/rootfs/tmp"
stage_elf "$context/rootfs" "$work/packages/usr/sbin/haproxy" /usr/sbin/haproxy "$work/packages"
stage_elf "$context/rootfs" "$work/packages/usr/bin/curl" /usr/bin/curl "$work/packages"
for f in haproxy curl libc6; do
    install -D -m 0644 "$work/packages/usr/share/doc/$f/copyright" "$context/rootfs/usr/share/doc/$f/copyright"
done
cp "$script_dir/Dockerfile" "$context/Dockerfile"

say "building $image (HAProxy $version)"
DOCKER_BUILDKIT=0 docker build -q \
    --label "org.opencontainers.image.title=$image" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.strata.built-by=deploy/images/haproxy/ensure-image.sh" \
    -t "$image" "$context" >/dev/null 2> >(grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e '^ *$' -e 'environment-variable' >&2)
docker run --rm --read-only --network none "$image" -v >&2
say "built $image in $((SECONDS - started)) s ($(mib "$image"))"
result "$image"
