#!/usr/bin/env bash
# Installs the dependencies (Debian packages, a venv for pinned PyPI packages),
# builds Lathe, prepares the models, and runs the main job on the real
# MiniLM: check → compile to the simplified IR → inspect.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

lathe_install_deps
lathe_build
lathe_prepare_models

MODELS="${LATHE_MODELS_DIR:-${LATHE_BUILD}/models}"
MINILM="${MODELS}/real/all-minilm-l6-v2/all-minilm-l6-v2.opset17.onnx"
OUT="${LATHE_BUILD}/demo"
mkdir -p "${OUT}"
echo
echo "== main job: ${MINILM}"
"${LATHE_BUILD}/bin/lathe" check "${MINILM}"
"${LATHE_BUILD}/bin/lathe" compile "${MINILM}" --compile-to=simplify -o "${OUT}/minilm.mlirbc"
"${LATHE_BUILD}/bin/lathe" compile "${OUT}/minilm.mlirbc" -o "${OUT}/minilm.simplified.mlir"
"${LATHE_BUILD}/bin/lathe" inspect "${MINILM}" --batch 1 --seq 128
echo
echo "Simplified IR (weights elided): ${OUT}/minilm.simplified.mlir"
