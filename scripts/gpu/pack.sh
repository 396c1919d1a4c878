#!/usr/bin/env bash
# Prepares what travels to the GPU machine (no network, no packages there; the
# working tree plus the carried ignored paths, 64 MiB in all) and checks its size:
#   - vendor/ filled (flatbuffers headers + pre-generated schema header), fresh
#     against runtime/artifact/lathe_artifact.fbs;
#   - the size of the tracked + untracked-not-ignored files plus vendor/.
# Then run there:  carry ["vendor"], command "bash scripts/bench/gpu.sh".
#
#   scripts/gpu/pack.sh [--limit-mib 64]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIMIT_MIB=64
[[ "${1:-}" == "--limit-mib" ]] && LIMIT_MIB="$2"
cd "$ROOT"

SCHEMA=runtime/artifact/lathe_artifact.fbs
want="$(sha256sum "$SCHEMA" | cut -d' ' -f1)"
have="$(cat vendor/lathe_artifact.fbs.sha256 2>/dev/null || true)"
if [[ ! -f vendor/lathe_artifact_generated.h || ! -f vendor/flatbuffers/flatbuffers.h || "$want" != "$have" ]]; then
  echo "pack.sh: (re)filling vendor/"
  scripts/gpu/vendor.sh
else
  echo "pack.sh: vendor/ is up to date with $SCHEMA"
fi

tree_bytes="$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')"
tree_files="$(git ls-files -co --exclude-standard | wc -l)"
vendor_bytes="$(find vendor -type f -print0 | xargs -0 stat -c %s | awk '{s+=$1} END {print s+0}')"
shared_bytes=0
[[ -d shared ]] && shared_bytes="$(find shared -type f -print0 | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')"
total=$((tree_bytes + vendor_bytes + shared_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b / 1048576}'; }
echo "pack.sh: working tree $(mib "$tree_bytes") ($tree_files files), vendor/ $(mib "$vendor_bytes"), shared/ $(mib "$shared_bytes"): total $(mib "$total") of ${LIMIT_MIB} MiB"
echo "pack.sh: largest files that travel:"
{ git ls-files -co --exclude-standard -z; find vendor -type f -print0; } | xargs -0 stat -c '%s %n' | sort -rn | head -5 |
  awk '{printf "  %8.1f KiB  %s\n", $1 / 1024, $2}'
if (( total > LIMIT_MIB * 1048576 / 2 )); then
  echo "pack.sh: error: $(mib "$total") is over half the ${LIMIT_MIB} MiB limit; remove large untracked files (git status)" >&2
  exit 1
fi
echo "pack.sh: ready: run tool with carry [\"vendor\"] and command \"bash scripts/bench/gpu.sh\""
