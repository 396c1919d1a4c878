#!/usr/bin/env bash
# Installs the dependencies (Debian packages, a venv for pinned PyPI packages),
# builds Lathe, prepares the models, and runs the main job on the real
# MiniLM and a Llama export (check → compile → run → compare with torch → inspect → bench), and
# SmolLM2 from its GGUF file (generate, perplexity).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

lathe_install_deps
lathe_build
lathe_prepare_models

MODELS="${LATHE_MODELS_DIR:-${LATHE_BUILD}/models}"
LATHE="${LATHE_BUILD}/bin/lathe"
OUT="${LATHE_BUILD}/demo"
mkdir -p "${OUT}"

# main_job <onnx> <reference dir>: check, compile to an artifact, run, compare with torch.
main_job() {
  local model="$1" ref="$2" name
  name="$(basename "${model}" .onnx)"
  echo
  echo "== main job: ${model}"
  "${LATHE}" check "${model}"
  "${LATHE}" compile "${model}" --compile-to=simplify -o "${OUT}/${name}.simplified.mlir"
  "${LATHE}" compile "${model}" -o "${OUT}/${name}.lathe"
  local inputs=()
  for f in "${ref}"/inputs/*.npy; do inputs+=(--input "$(basename "${f}" .npy)=${f}"); done
  "${LATHE}" run "${OUT}/${name}.lathe" "${inputs[@]}" --output-dir "${OUT}/${name}.out" >/dev/null
  echo "-- outputs vs the torch reference ($(basename "${ref}")):"
  /usr/bin/python3 "${LATHE_ROOT}/scripts/lib/compare_outputs.py" "${ref}/outputs" "${OUT}/${name}.out"
}

main_job "${MODELS}/real/all-minilm-l6-v2/all-minilm-l6-v2.opset17.onnx" "${MODELS}/real/all-minilm-l6-v2/text_b4"
main_job "${MODELS}/generated/llama-tiny/llama-tiny.opset17.onnx" "${MODELS}/generated/llama-tiny/b3_s33"
"${LATHE}" inspect "${MODELS}/real/all-minilm-l6-v2/all-minilm-l6-v2.opset17.onnx" --batch 1 --seq 128
"${LATHE}" bench "${OUT}/all-minilm-l6-v2.opset17.lathe" --batch 1 --seq 128 --iterations 10

# The real decoder from its GGUF file: generate through the KV cache, then perplexity on English text.
SMOL="${MODELS}/real/smollm2-135m-instruct/smollm2-135m-instruct-q4_1.gguf"
echo
echo "== main job: ${SMOL}"
"${LATHE}" compile "${SMOL}" -o "${OUT}/smollm2.lathe"
"${LATHE}" generate "${OUT}/smollm2.lathe" --prompt "The old lighthouse keeper wrote in his ledger:" --max-new-tokens 32
"${LATHE}" eval "${OUT}/smollm2.lathe" --text "${MODELS}/corpus/austen/prideprejudice.txt" --protocol llama.cpp --chunks 8
echo
echo "Simplified IR (weights elided) and artifacts: ${OUT}"
