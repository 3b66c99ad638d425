#!/usr/bin/env bash
# Prepares the Python reference server of the benchmark.
#
#   bench/python/setup.sh DIR
#
# creates a virtualenv in DIR (if missing), installs requirements.txt into it and
# generates the gRPC code of the catalog context into DIR/gen. Idempotent: a second
# run with nothing changed does no work. Prints nothing but errors. Then:
#
#   DIR/bin/python bench/python/server.py --listen 127.0.0.1:PORT --dsn postgres://... --gen DIR/gen
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
requirements="$here/requirements.txt"
proto="$repo/proto/strata/catalog/v1/catalog.proto"
shared_protos="$repo/proto/strata/type/v1/money.proto"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

if [ ! -x "$dir/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$dir"
fi

# Reinstall only when requirements.txt changed since the last successful install.
if ! cmp -s "$requirements" "$dir/.requirements.installed"; then
    "$dir/bin/python" -m pip install -q -r "$requirements"
    cp "$requirements" "$dir/.requirements.installed"
fi

# Regenerate only when the proto (or the installed requirements) is newer than the code.
stub="$dir/gen/strata/catalog/v1/catalog_pb2_grpc.py"
if [ ! -f "$stub" ] || [ "$proto" -nt "$stub" ] || [ "$shared_protos" -nt "$stub" ] || [ "$dir/.requirements.installed" -nt "$stub" ]; then
    # grpc_tools ships google/protobuf/*.proto (timestamp.proto) in its _proto directory.
    wkt="$("$dir/bin/python" -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
    tmp="$(mktemp -d "$dir/gen.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"
    "$dir/bin/python" -m grpc_tools.protoc -I "$repo/proto" -I "$wkt" \
        --python_out="$tmp" --grpc_python_out="$tmp" "$proto" $shared_protos
    rm -rf "$dir/gen"
    mv "$tmp" "$dir/gen"
    trap - EXIT
fi
