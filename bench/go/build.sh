#!/usr/bin/env bash
# Builds the Go peer of the benchmark.
#
#   bench/go/build.sh DIR
#
# in GOPATH mode, from Debian's packages alone (`make bench` installs them):
# DIR is the peer's own GOPATH entry (besides /usr/share/gocode, where Debian's
# golang-*-dev packages keep their sources) and its build cache. Generates the
# catalog's gRPC code into DIR/src/strata/gen and builds DIR/bin/catalog-server.
# Idempotent: with nothing changed, go's build cache makes a second run quick.
# Prints nothing but errors. Then:
#
#   DIR/bin/catalog-server --listen 127.0.0.1:PORT --dsn postgres://...
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"

# Pure Go (CGO_ENABLED=0): no C toolchain needed, a static binary.
export GO111MODULE=off GOPATH="$dir:/usr/share/gocode" GOCACHE="$dir/cache" GOFLAGS= CGO_ENABLED=0

# The protos carry no go_package option (they are the product's, not this
# peer's): the M options say which Go package each file becomes.
catalog=strata/catalog/v1/catalog.proto
money=strata/type/v1/money.proto
packages="M$catalog=strata/gen/catalog/v1;catalogv1,M$money=strata/gen/type/v1;typev1"
tmp="$(mktemp -d "$dir/gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# protoc writes into existing folders only.
mkdir -p "$tmp/src"
# /usr/include: google/protobuf/timestamp.proto, from libprotobuf-dev.
protoc -I "$repo/proto" -I /usr/include \
    --go_out="$tmp/src" --go_opt="$packages" \
    --go-grpc_out="$tmp/src" --go-grpc_opt="$packages" \
    "$catalog" "$money"
# Replace the generated code only when it changed, so that go's cache holds.
mkdir -p "$dir/src/strata"
if ! diff -r -q "$tmp/src/strata/gen" "$dir/src/strata/gen" >/dev/null 2>&1; then
    rm -rf "$dir/src/strata/gen"
    mv "$tmp/src/strata/gen" "$dir/src/strata/gen"
fi

cd "$here"
go build -o "$dir/bin/catalog-server" .
