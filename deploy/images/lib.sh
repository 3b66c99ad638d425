# shellcheck shell=bash
# Shared by deploy/images/build.sh and the infrastructure images'
# ensure-image.sh: put an ELF program and the shared libraries it links into a
# directory laid out like a root file system, for a `FROM scratch` image; fetch
# Debian packages without installing them; hash a build context.
#
# Sourced, not run. Expects `say` (a message on stderr) to be defined.

# stage_elf ROOT FILE [DEST] [FROM]: copies FILE to ROOT/DEST (default: FILE's
# own path) and each shared library it links, and the dynamic loader, to the
# path the loader lists it under, so the program runs with ROOT as /.
#   FROM empty: FILE is a program of this machine; the libraries are listed by
#     `ldd` and taken from this machine.
#   FROM a directory: an unpacked set of Debian packages (see unpack_debs);
#     FILE is inside it, and the libraries and the loader are those of FROM
#     (its own loader lists them with --list), not this machine's.
# Fails when a library is not found. Libraries are copied with their links
# resolved (a file at the listed path), mode 0755 for the program, 0644 else.
stage_elf() {
    local root=$1 file=$2 dest=${3:-$2} from=${4:-} listing line path target
    if [ -z "$from" ]; then
        listing=$(ldd "$file") || { say "error: ldd $file failed"; return 1; }
    else
        local loader="$from/lib64/ld-linux-x86-64.so.2"
        [ -x "$loader" ] || { say "error: no loader at $loader (is libc6 unpacked?)"; return 1; }
        listing=$("$loader" --library-path \
            "$from/lib/x86_64-linux-gnu:$from/usr/lib/x86_64-linux-gnu" --list "$file") || {
            say "error: $loader --list $file failed"; return 1; }
    fi
    install -D -m 0755 "$file" "$root$dest"
    while IFS= read -r line; do
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)",
        # or the vDSO ("linux-vdso.so.1 (0x…)"), which is the kernel's.
        case "$line" in
            *"=> not found"*) say "error: $file needs ${line%% =>*}, which is not found"; return 1 ;;
            *" => "*) path=${line#*=> }; path=${path% (0x*}; target=${line%% =>*} ;;
            *) path=${line% (0x*}; target=$path ;;
        esac
        path=$(printf '%s' "$path" | tr -d '[:space:]')
        target=$(printf '%s' "$target" | tr -d '[:space:]')
        case "$path" in /*|"$from"/*) ;; *) continue ;; esac
        if [ -n "$from" ]; then
            # The loader's own line names the interpreter path (/lib64/…) on the
            # left; a library's, its soname: place it where FROM has it.
            case "$target" in /*) ;; *) target=${path#"$from"} ;; esac
        else
            target=$path
        fi
        [ -e "$root$target" ] || install -D -m 0644 "$(readlink -f "$path")" "$root$target"
    done <<<"$listing"
    # The loader must be executable.
    chmod 0755 "$root/lib64/ld-linux-x86-64.so.2"
}

# download_debs DIR PACKAGE…: downloads PACKAGE… and everything they depend on
# (recommends excluded), as apt would install them on an empty system, into
# DIR, from the apt sources of this machine. Nothing is installed. Runs
# `apt-get update` first when the package lists do not know a package.
download_debs() {
    local dir=$1
    shift
    mkdir -p "$dir/partial"
    local apt=(apt-get install --download-only --yes -qq --no-install-recommends
        -o Dir::State::status=/dev/null -o "Dir::Cache::archives=$dir"
        -o APT::Sandbox::User=root -o Debug::NoLocking=1)
    if ! "${apt[@]}" "$@" >&2 2>/dev/null; then
        say "apt-get update (the package lists do not have $*)"
        apt-get update -qq >&2
        "${apt[@]}" "$@" >&2
    fi
}

# unpack_debs DIR ROOT: unpacks every .deb in DIR into ROOT (dpkg-deb -x: the
# files only, no maintainer scripts).
unpack_debs() {
    local dir=$1 root=$2 deb
    mkdir -p "$root"
    for deb in "$dir"/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
}

# deb_version DIR PACKAGE: the version of PACKAGE's .deb in DIR (upstream part,
# without the Debian revision and epoch), e.g. 3.4.23.
deb_version() {
    local deb
    deb=$(find "$1" -maxdepth 1 -name "$2_*.deb" | head -n 1)
    [ -n "$deb" ] || return 1
    dpkg-deb -f "$deb" Version | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//'
}

# context_hash DIR: one SHA-256 over the names, modes, owners and contents of
# every file under DIR: equal hashes, equal images.
context_hash() {
    (cd "$1" && find . -mindepth 1 -printf '%p %m %U:%G %l\n' | LC_ALL=C sort \
        && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# image_label IMAGE LABEL: the label's value, empty when the image or the label
# does not exist.
image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# mib IMAGE: the image's size in MiB, one decimal.
mib() {
    docker image inspect -f '{{ .Size }}' "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'
}

# ensure_debian_image: the whole of an infrastructure image's ensure-image.sh
# (etcd/, haproxy/): print the image (on fd 3, see `result`) when it exists,
# else build it, once at a time (flock), from Debian packages downloaded with
# apt and never installed, FROM scratch with the Dockerfile beside the script.
# Reads these variables, set by the caller:
#   name          for messages and scratch directories (etcd, haproxy)
#   image         the reference to make (strata-etcd:3.4)
#   major_minor   the version the first of `packages` must have (3.4)
#   override      an image to use as is, unchecked, when not empty
#   lock_file     the flock file serialising builds
#   script_dir    where the Dockerfile is
#   packages      array: Debian packages to fetch; the first is versioned
#   programs      array: absolute paths of the programs to stage, as packaged
#   dirs          array: directories to make in the build context (rootfs/…)
#   smoke         array: arguments the built image is run with once, offline
# and `say` and `result` (print the reference on fd 3 and exit 0).
# shellcheck disable=SC2154 # the variables above are the caller's
ensure_debian_image() {
    [ -z "$override" ] || result "$override"
    docker info >/dev/null 2>&1 || { say "error: no Docker engine answers (docker info failed)"; exit 1; }
    docker image inspect "$image" >/dev/null 2>&1 && result "$image"

    exec 9>>"$lock_file"
    chmod 0666 "$lock_file" 2>/dev/null || true
    if ! flock -n 9; then
        say "another build of $image is running; waiting for it"
        flock 9
    fi
    docker image inspect "$image" >/dev/null 2>&1 && result "$image"

    local started=$SECONDS work version context dir program package
    work=$(mktemp -d "${TMPDIR:-/tmp}/strata-$name.XXXXXX")
    # shellcheck disable=SC2064 # the path is fixed now, on purpose
    trap "rm -rf '$work'" EXIT

    say "downloading Debian's ${packages[*]}"
    download_debs "$work/debs" "${packages[@]}"
    version=$(deb_version "$work/debs" "${packages[0]}")
    case "$version" in
        "$major_minor".*) ;;
        *) say "error: Debian's ${packages[0]} is $version, not $major_minor.x: update $script_dir/ensure-image.sh and the compose file"; exit 1 ;;
    esac
    unpack_debs "$work/debs" "$work/packages"

    context="$work/context"
    mkdir -p "$context/rootfs/tmp"
    for dir in "${dirs[@]}"; do mkdir -p "$context/$dir"; done
    chmod 1777 "$context/rootfs/tmp"
    for program in "${programs[@]}"; do
        stage_elf "$context/rootfs" "$work/packages$program" "$program" "$work/packages"
    done
    for package in "${packages[@]}" libc6; do
        install -D -m 0644 "$work/packages/usr/share/doc/$package/copyright" "$context/rootfs/usr/share/doc/$package/copyright"
    done
    cp "$script_dir/Dockerfile" "$context/Dockerfile"

    say "building $image ($name $version)"
    DOCKER_BUILDKIT=0 docker build -q \
        --label "org.opencontainers.image.title=$image" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.strata.built-by=deploy/images/$name/ensure-image.sh" \
        -t "$image" "$context" >/dev/null 2> >(grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e '^ *$' -e 'environment-variable' >&2)
    docker run --rm --read-only --network none "$image" "${smoke[@]}" >&2
    say "built $image in $((SECONDS - started)) s ($(mib "$image"))"
    result "$image"
}
