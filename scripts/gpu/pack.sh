#!/usr/bin/env bash
# Prepares what travels to the GPU machine (no network, no packages there; the
# working tree plus the carried ignored paths, 64 MiB in all) and checks its size:
#   - vendor/ filled (flatbuffers headers + pre-generated schema header), fresh
#     against runtime/artifact/lathe_artifact.fbs;
#   - gpu-carry/ (scripts/gpu/carry.py: real-model artifacts with this CPU's
#     outputs), rebuilt when it is missing or older than HEAD (--no-models: left out);
#   - the size of the tracked + untracked-not-ignored files plus vendor/ and gpu-carry/.
# Then run there:  carry ["vendor", "gpu-carry"], command "bash scripts/bench/gpu.sh".
#
#   scripts/gpu/pack.sh [--limit-mib 64] [--no-models]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIMIT_MIB=64
MODELS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --limit-mib) LIMIT_MIB="$2"; shift 2 ;;
    --no-models) MODELS=0; shift ;;
    *) echo "pack.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
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

CARRY=(vendor)
if [[ $MODELS == 1 ]]; then
  head="$(git rev-parse --short HEAD)"
  have_commit="$(python3 -c 'import json; print(json.load(open("gpu-carry/manifest.json"))["commit"])' 2>/dev/null || true)"
  if [[ "$have_commit" != "$head" ]]; then
    echo "pack.sh: (re)building gpu-carry/ for $head (was: ${have_commit:-none})"
    PY="$ROOT/.venv/bin/python"; [[ -x "$PY" ]] || PY=python3
    "$PY" scripts/gpu/carry.py --out gpu-carry
  else
    echo "pack.sh: gpu-carry/ is up to date with $head"
  fi
  CARRY+=(gpu-carry)
fi
carry_bytes=0
[[ -d gpu-carry && $MODELS == 1 ]] && carry_bytes="$(find gpu-carry -type f -print0 | xargs -0 stat -c %s | awk '{s+=$1} END {print s+0}')"

tree_bytes="$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')"
tree_files="$(git ls-files -co --exclude-standard | wc -l)"
vendor_bytes="$(find vendor -type f -print0 | xargs -0 stat -c %s | awk '{s+=$1} END {print s+0}')"
shared_bytes=0
[[ -d shared ]] && shared_bytes="$(find shared -type f -print0 | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')"
total=$((tree_bytes + vendor_bytes + shared_bytes + carry_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b / 1048576}'; }
echo "pack.sh: working tree $(mib "$tree_bytes") ($tree_files files), vendor/ $(mib "$vendor_bytes"), gpu-carry/ $(mib "$carry_bytes"), shared/ $(mib "$shared_bytes"): total $(mib "$total") of ${LIMIT_MIB} MiB"
echo "pack.sh: largest files that travel:"
{ git ls-files -co --exclude-standard -z; find vendor -type f -print0; } | xargs -0 stat -c '%s %n' | sort -rn | head -5 |
  awk '{printf "  %8.1f KiB  %s\n", $1 / 1024, $2}'
if (( total > LIMIT_MIB * 1048576 * 15 / 16 )); then
  echo "pack.sh: error: $(mib "$total") leaves less than 1/16 of the ${LIMIT_MIB} MiB limit; remove large untracked files (git status) or lower carry.py --limit-mib" >&2
  exit 1
fi
list="$(printf '"%s", ' "${CARRY[@]}")"
echo "pack.sh: ready: run tool with carry [${list%, }] and command \"bash scripts/bench/gpu.sh\""
