#!/usr/bin/env bash
# Validates an OpenAPI document (3.0 or 3.1) with openapi-spec-validator from
# PyPI, installed on first use into a venv of its own under .tools/.
# Usage: scripts/validate-openapi.sh FILE
set -euo pipefail
VERSION=0.7.2
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/openapi-spec-validator-$VERSION"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    rm -rf "$root"/.tools/openapi-spec-validator-*
    python3 -m venv "$venv" >/dev/null 2>&1 || {
        echo "python3 -m venv failed; installing Debian's python3-venv" >&2
        rm -rf "$venv"
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"
    }
    "$venv/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==$VERSION" >&2 || { rm -rf "$venv"; exit 1; }
fi
exec "$venv/bin/openapi-spec-validator" "$1"
