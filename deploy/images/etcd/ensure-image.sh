#!/usr/bin/env bash
# Make sure the etcd image of the compose topology exists in the local Docker
# engine and print its reference (strata-etcd:3.4) as the only line on stdout;
# everything else goes to stderr. Like docker/postgres/ensure-image.sh:
#
#   1. $STRATA_ETCD_IMAGE, if set (printed as is, nothing checked);
#   2. the local image strata-etcd:3.4, if it exists;
#   3. otherwise build it, without any registry: Debian's etcd-server and
#      etcd-client packages (and libc6) are downloaded with apt from the
#      sources configured on this machine (nothing is installed), unpacked,
#      and /usr/bin/etcd and /usr/bin/etcdctl are put with the libraries their
#      loader lists into a FROM scratch image (Dockerfile beside this script).
#
# Builds are serialised with flock (STRATA_ETCD_LOCK, default
# /tmp/strata-etcd-image.lock): a concurrent caller waits, then reuses the
# image. Takes a few seconds once the packages are downloaded.
set -euo pipefail

exec 3>&1 1>&2

readonly image="strata-etcd:3.4" major_minor="3.4"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock_file="${STRATA_ETCD_LOCK:-/tmp/strata-etcd-image.lock}"

say() { printf 'etcd image: %s\n' "$*" >&2; }
result() { printf '%s\n' "$1" >&3; exit 0; }
# shellcheck source=deploy/images/lib.sh
. "$script_dir/../lib.sh"

[ -z "${STRATA_ETCD_IMAGE:-}" ] || result "$STRATA_ETCD_IMAGE"
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
work=$(mktemp -d "${TMPDIR:-/tmp}/strata-etcd.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "downloading Debian's etcd-server and etcd-client"
download_debs "$work/debs" etcd-server etcd-client
version=$(deb_version "$work/debs" etcd-server)
case "$version" in
    "$major_minor".*) ;;
    *) say "error: Debian's etcd-server is $version, not $major_minor.x: update $0 and the compose file"; exit 1 ;;
esac
unpack_debs "$work/debs" "$work/packages"

context="$work/context"
mkdir -p "$context/rootfs/tmp" "$context/state"
chmod 1777 "$context/rootfs/tmp"
stage_elf "$context/rootfs" "$work/packages/usr/bin/etcd" /usr/bin/etcd "$work/packages"
stage_elf "$context/rootfs" "$work/packages/usr/bin/etcdctl" /usr/bin/etcdctl "$work/packages"
for f in etcd-server etcd-client libc6; do
    install -D -m 0644 "$work/packages/usr/share/doc/$f/copyright" "$context/rootfs/usr/share/doc/$f/copyright"
done
cp "$script_dir/Dockerfile" "$context/Dockerfile"

say "building $image (etcd $version)"
DOCKER_BUILDKIT=0 docker build -q \
    --label "org.opencontainers.image.title=$image" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.strata.built-by=deploy/images/etcd/ensure-image.sh" \
    -t "$image" "$context" >/dev/null 2> >(grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e '^ *$' -e 'environment-variable' >&2)
docker run --rm --read-only --network none "$image" --version >&2
say "built $image in $((SECONDS - started)) s ($(mib "$image"))"
result "$image"
