#!/usr/bin/env bash
# Fills vendor/ (git-ignored) with what the runtime needs to build on a machine
# without flatc or the FlatBuffers package (the GPU machine): the flatbuffers/
# headers and lathe_artifact_generated.h, generated here from the schema.
# runtime/CMakeLists.txt uses them when flatc is not found (LATHE_VENDOR_DIR).
#
#   scripts/gpu/vendor.sh [VENDOR_DIR]     (default: <repo>/vendor)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENDOR="${1:-$ROOT/vendor}"
SCHEMA="$ROOT/runtime/artifact/lathe_artifact.fbs"

FLATC="${FLATC:-$(command -v flatc || true)}"
[[ -n "$FLATC" ]] || { echo "vendor.sh: flatc not found (apt-get install flatbuffers-compiler, or set FLATC)" >&2; exit 1; }
INCLUDE="${FLATBUFFERS_INCLUDE:-}"
if [[ -z "$INCLUDE" ]]; then
  for d in /usr/include /usr/local/include "$(dirname "$(dirname "$FLATC")")/include"; do
    [[ -f "$d/flatbuffers/flatbuffers.h" ]] && { INCLUDE="$d"; break; }
  done
fi
[[ -n "$INCLUDE" && -f "$INCLUDE/flatbuffers/flatbuffers.h" ]] ||
  { echo "vendor.sh: flatbuffers/flatbuffers.h not found (apt-get install libflatbuffers-dev, or set FLATBUFFERS_INCLUDE)" >&2; exit 1; }

mkdir -p "$VENDOR"
rm -rf "$VENDOR/flatbuffers"
cp -r "$INCLUDE/flatbuffers" "$VENDOR/flatbuffers"
"$FLATC" --cpp --scoped-enums -o "$VENDOR" "$SCHEMA"
# CMake refuses a header generated from another schema.
sha256sum "$SCHEMA" | cut -d' ' -f1 > "$VENDOR/lathe_artifact.fbs.sha256"
"$FLATC" --version > "$VENDOR/FLATC_VERSION"
echo "vendor.sh: $VENDOR ($(du -sh "$VENDOR" | cut -f1); $(cat "$VENDOR/FLATC_VERSION"), headers from $INCLUDE)"
