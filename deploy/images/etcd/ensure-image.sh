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

readonly name=etcd image="strata-etcd:3.4" major_minor="3.4"
readonly override="${STRATA_ETCD_IMAGE:-}" lock_file="${STRATA_ETCD_LOCK:-/tmp/strata-etcd-image.lock}"
readonly packages=(etcd-server etcd-client) programs=(/usr/bin/etcd /usr/bin/etcdctl) dirs=(state) smoke=(--version)
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { printf 'etcd image: %s\n' "$*" >&2; }
result() { printf '%s\n' "$1" >&3; exit 0; }
# shellcheck source=deploy/images/lib.sh
. "$script_dir/../lib.sh"

ensure_debian_image
