#!/usr/bin/env bash
# Make sure a PostgreSQL 15 image is available to the local Docker engine and
# print its reference (name:tag) as the only line on stdout. Everything else
# (progress, errors) goes to stderr.
#
# Order:
#   1. $STRATA_POSTGRES_IMAGE, if set (printed as is, nothing checked);
#   2. the local image strata-postgres:15, if it exists;
#   3. the official postgres:15, if it exists locally or `docker pull` works;
#   4. otherwise build strata-postgres:15 locally, without any registry:
#      debootstrap a minimal Debian bookworm with postgresql-15 from the apt
#      mirror configured on this machine, and `docker import` it.
#
# Building needs root (or passwordless sudo), takes about a minute, is
# serialised with flock (a concurrent caller waits, then reuses the image).
#
# Optional knobs: STRATA_DEBIAN_MIRROR (override the mirror URL read from
# /etc/apt), STRATA_POSTGRES_LOCK (lock file path).
set -euo pipefail

# stdout is reserved for the single result line: keep it on fd 3.
exec 3>&1 1>&2

LOCAL_IMAGE="strata-postgres:15"
OFFICIAL_IMAGE="postgres:15"
SUITE="bookworm"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENTRYPOINT_SRC="$SCRIPT_DIR/entrypoint.sh"
LOCK_FILE="${STRATA_POSTGRES_LOCK:-/tmp/strata-postgres-image.lock}"

say() { printf 'ensure-image: %s\n' "$*" >&2; }
result() { printf '%s\n' "$1" >&3; exit 0; }

if [ -n "${STRATA_POSTGRES_IMAGE:-}" ]; then
    result "$STRATA_POSTGRES_IMAGE"
fi

if ! docker info >/dev/null 2>&1; then
    say "error: no Docker engine answers (docker info failed); Docker is needed to run the PostgreSQL tests, or set STRATA_TEST_DATABASE_URL to use an existing database"
    exit 1
fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

if image_exists "$LOCAL_IMAGE"; then
    result "$LOCAL_IMAGE"
fi
if image_exists "$OFFICIAL_IMAGE"; then
    result "$OFFICIAL_IMAGE"
fi
say "trying: docker pull $OFFICIAL_IMAGE (30 s max)"
if timeout 30 docker pull "$OFFICIAL_IMAGE" >&2 2>&1; then
    result "$OFFICIAL_IMAGE"
fi
say "no registry available; building $LOCAL_IMAGE locally"

# --------------------------------------------------------------------------
# Local build
# --------------------------------------------------------------------------

SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        say "error: building $LOCAL_IMAGE needs root or passwordless sudo (debootstrap);"
        say "       alternatively set STRATA_POSTGRES_IMAGE or STRATA_TEST_DATABASE_URL"
        exit 1
    fi
fi

# Print the first mirror URI configured for "$SUITE" itself (not -updates or
# -security) in the apt sources of this machine.
find_mirror() {
    local files=() f uri
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    for f in "${files[@]}"; do
        case "$f" in
            *.sources)
                # deb822: paragraphs separated by blank lines.
                uri="$(awk -v suite="$SUITE" '
                    function has(list, word,   n, a, i) {
                        n = split(list, a, /[ \t]+/)
                        for (i = 1; i <= n; i++) if (a[i] == word) return 1
                        return 0
                    }
                    BEGIN { RS = ""; FS = "\n" }
                    {
                        types = ""; suites = ""; uris = ""; enabled = "yes"
                        for (i = 1; i <= NF; i++) {
                            line = $i
                            if (line ~ /^#/ || line ~ /^[ \t]/) continue
                            k = tolower(line); sub(/:.*/, "", k)
                            v = line; sub(/^[^:]*:[ \t]*/, "", v)
                            if (k == "types") types = v
                            else if (k == "suites") suites = v
                            else if (k == "uris") uris = v
                            else if (k == "enabled") enabled = tolower(v)
                        }
                        if (enabled != "no" && has(types, "deb") && has(suites, suite)) {
                            n = split(uris, u, /[ \t]+/)
                            for (j = 1; j <= n; j++)
                                if (u[j] ~ /^(https?|file):/) { print u[j]; exit }
                        }
                    }' "$f")" ;;
            *)
                # one-line format: deb [opts] uri suite components...
                uri="$(awk -v suite="$SUITE" '
                    $1 == "deb" {
                        i = 2
                        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                        if ($(i + 1) == suite && $i ~ /^(https?|file):/) { print $i; exit }
                    }' "$f")" ;;
        esac
        if [ -n "$uri" ]; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    return 1
}

build_image() {
    local started mirror workdir rootfs tmp_tag
    started=$(date +%s)

    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        say "installing debootstrap"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends debootstrap \
            >/dev/null
    fi

    mirror="${STRATA_DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ]; then
        mirror="$(find_mirror)" || {
            say "error: no apt source for '$SUITE' found in /etc/apt/sources.list{,.d/}; set STRATA_DEBIAN_MIRROR"
            exit 1
        }
    fi
    say "mirror: $mirror"

    workdir="$(mktemp -d "${TMPDIR:-/tmp}/strata-postgres.XXXXXX")"
    rootfs="$workdir/rootfs"
    tmp_tag="strata-postgres:15-build-$$"
    # shellcheck disable=SC2064 # expand now: the locals are gone at exit time
    trap "cleanup_build '$workdir' '$tmp_tag'" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    say "debootstrap $SUITE + postgresql-15 into $rootfs"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        "$(command -v debootstrap || echo /usr/sbin/debootstrap)" \
        --variant=minbase --include=postgresql-15 "$SUITE" "$rootfs" "$mirror" >&2
    kill_chroot_procs "$rootfs"
    umount_under "$rootfs/"

    say "trimming the root file system"
    "${SUDO[@]}" bash -euo pipefail -s "$rootfs" "$ENTRYPOINT_SRC" >&2 <<'EOS'
rootfs="$1"; entrypoint="$2"
cd "$rootfs"
# The package's postinst created a "main" cluster: not used (PGDATA is separate).
rm -rf var/lib/postgresql/15 etc/postgresql/15
# Docs (keep copyright notices), man pages, translations, locale sources.
find usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf usr/share/man/* usr/share/info/* usr/share/locale/* usr/share/i18n \
       usr/share/lintian usr/share/postgresql/15/man
# JIT: LLVM is ~130 MB and useless for tests. Without llvmjit.so the server
# silently runs with JIT unavailable (the files stay registered with dpkg).
rm -rf usr/lib/postgresql/15/lib/llvmjit* usr/lib/postgresql/15/lib/bitcode \
       usr/lib/*-linux-gnu/libLLVM-14.so*
# apt / dpkg caches and logs.
rm -rf var/cache/apt/* var/lib/apt/lists/* var/cache/debconf/*-old \
       var/lib/dpkg/*-old var/log/* var/cache/ldconfig/aux-cache
mkdir -p var/lib/apt/lists/partial var/cache/apt/archives/partial
# Things Docker provides at run time (nothing is mounted here any more).
rm -rf --one-file-system dev/* proc/* sys/* tmp/* etc/hostname
: > etc/resolv.conf
# Directories the entrypoint uses; owned by the image's postgres user.
uid="$(awk -F: '$1 == "postgres" { print $3 }' etc/passwd)"
gid="$(awk -F: '$1 == "postgres" { print $4 }' etc/passwd)"
[ -n "$uid" ] && [ -n "$gid" ] || { echo "no postgres user in rootfs" >&2; exit 1; }
mkdir -p var/lib/postgresql/data run/postgresql docker-entrypoint-initdb.d
chown "$uid:$gid" var/lib/postgresql var/lib/postgresql/data run/postgresql
chmod 0700 var/lib/postgresql/data
chmod 3777 run/postgresql
install -m 0755 "$entrypoint" usr/local/bin/docker-entrypoint.sh
EOS

    say "importing into Docker"
    # Docker 20.10's `import --change` rejects STOPSIGNAL, so the metadata is
    # set by a (registry-free, legacy builder) `docker build` on top of it.
    "${SUDO[@]}" tar -C "$rootfs" --numeric-owner -cf - . \
        | docker import \
            --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV PGDATA=/var/lib/postgresql/data' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'VOLUME /var/lib/postgresql/data' \
            --change 'EXPOSE 5432' \
            --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
            --change 'CMD ["postgres"]' \
            - "$tmp_tag" >&2

    say "smoke test"
    docker run --rm --entrypoint postgres "$tmp_tag" --version >&2

    if printf 'FROM %s\nSTOPSIGNAL SIGINT\nLABEL org.strata.built-by=docker/postgres/ensure-image.sh\n' "$tmp_tag" \
        | DOCKER_BUILDKIT=0 docker build -q -t "$LOCAL_IMAGE" - >&2 2>/dev/null; then
        :
    else
        say "warning: could not add STOPSIGNAL SIGINT (docker build failed); docker stop will do a smart shutdown"
        docker tag "$tmp_tag" "$LOCAL_IMAGE"
    fi
    say "built $LOCAL_IMAGE in $(( $(date +%s) - started )) s ($(docker image inspect -f '{{.Size}}' "$LOCAL_IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

kill_chroot_procs() {
    local root="$1" p
    for p in /proc/[0-9]*; do
        if [ "$("${SUDO[@]}" readlink "$p/root" 2>/dev/null || true)" = "$root" ]; then
            say "stopping leftover process ${p#/proc/} in the build root"
            "${SUDO[@]}" kill -9 "${p#/proc/}" 2>/dev/null || true
        fi
    done
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup_build() {
    local workdir="$1" tmp_tag="$2"
    docker rmi "$tmp_tag" >/dev/null 2>&1 || true
    [ -d "$workdir" ] || return 0
    kill_chroot_procs "$workdir/rootfs"
    umount_under "$workdir/"
    "${SUDO[@]}" rm -rf --one-file-system "$workdir"
}

# debootstrap mounts proc/sys (and maybe dev) inside the target and normally
# unmounts them; if it was interrupted, never delete through a mount.
umount_under() {
    local prefix="$1" m
    while read -r m; do
        say "unmounting $m"
        "${SUDO[@]}" umount -l "$m" 2>/dev/null || true
    done < <(awk -v p="$prefix" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

# Serialise builds: a second caller waits here, then finds the image.
exec 9>>"$LOCK_FILE"
chmod 0666 "$LOCK_FILE" 2>/dev/null || true
if ! flock -n 9; then
    say "another build of $LOCAL_IMAGE is running; waiting for it"
    flock 9
fi
if image_exists "$LOCAL_IMAGE"; then
    result "$LOCAL_IMAGE"
fi

build_image
result "$LOCAL_IMAGE"
