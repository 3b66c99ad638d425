#!/usr/bin/env bash
# Proves that the proto breaking-change check can fail, so it cannot silently
# become a no-op (a rule set emptied in proto/buf.yaml, a file ignored, a
# baseline that lost a package, a command that checks nothing).
#
#   scripts/proto-breaking-selftest.sh BUF ARGS...
#
# BUF is the buf binary; ARGS is the breaking command exactly as `make lint` runs
# it from the repository root (e.g. `breaking proto --against
# proto/buf/v1-baseline.binpb --exclude-imports`). In a scratch copy of proto/ it
# runs that command on the committed tree (must pass), then deletes a field of a
# v1 message and an RPC of a v1 service with sed and runs it again: it must fail
# with buf's findings (exit code 100) naming both deletions.
set -euo pipefail

buf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -R "$root/proto" "$tmp/proto"
cd "$tmp"

fail() { echo "proto-breaking-selftest: FAILED: $*" >&2; exit 1; }

# Delete the first line of FILE that matches the sed address PATTERN (inside the
# range RANGE), insisting that exactly one line goes: if the protos change shape,
# this test must be updated, not pass without deleting anything.
delete_one() {
	local file=$1 range=$2 pattern=$3 before after
	before=$(wc -l <"$file")
	sed -i "${range}{${pattern}d}" "$file"
	after=$(wc -l <"$file")
	[ $((before - after)) -eq 1 ] || fail "expected to delete one line matching $pattern in $file, deleted $((before - after))"
}

"$buf" "$@" || fail "the committed protos do not pass the breaking check"

catalog=proto/strata/catalog/v1/catalog.proto
delete_one "$catalog" '/^message Product {$/,/^}$/' '/^  string sku = 2;$/'
delete_one "$catalog" '/^service ProductService {$/,/^}$/' '/^  rpc GetProduct(/'

status=0
out=$("$buf" "$@" 2>&1) || status=$?
[ -z "$out" ] || echo "$out" | sed 's/^/  scratch copy: /'
[ "$status" -eq 100 ] || fail "buf breaking exited $status on a deleted field and RPC, expected 100 (breaking changes found)"
grep -qF 'Previously present field "2" with name "sku" on message "Product" was deleted.' <<<"$out" ||
	fail "the deleted field Product.sku was not reported"
grep -qF 'Previously present RPC "GetProduct" on service "ProductService" was deleted.' <<<"$out" ||
	fail "the deleted RPC ProductService.GetProduct was not reported"
echo "proto-breaking-selftest: ok (a deleted v1 field and RPC fail the breaking check; the committed protos pass)"
