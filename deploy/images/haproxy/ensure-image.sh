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

readonly name=haproxy image="strata-haproxy:2.6" major_minor="2.6"
readonly override="${STRATA_HAPROXY_IMAGE:-}" lock_file="${STRATA_HAPROXY_LOCK:-/tmp/strata-haproxy-image.lock}"
readonly packages=(haproxy curl) programs=(/usr/sbin/haproxy /usr/bin/curl) dirs=(rootfs/usr/local/etc/haproxy) smoke=(-v)
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { printf 'haproxy image: %s\n' "$*" >&2; }
result() { printf '%s\n' "$1" >&3; exit 0; }
# shellcheck source=deploy/images/lib.sh
. "$script_dir/../lib.sh"

ensure_debian_image
