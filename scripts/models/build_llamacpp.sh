#!/usr/bin/env bash
# Builds llama.cpp, the reference for tokenization, logits and perplexity (issue #4), from the
# sources vendored in the pinned llama-cpp-python sdist, plus our logits dumper
# (scripts/models/llamacpp_logits.cpp) linked against the same static libllama.
#
#   scripts/models/build_llamacpp.sh      # -> build/llamacpp/bin/{llama-quantize,llama-tokenize,
#                                         #    llama-perplexity,llama-bench,llamacpp-logits}
#
# Environment: LATHE_MODEL_CACHE (where the sdist is kept, default <repo>/build/model-cache),
#              LATHE_LLAMACPP_DIR (output, default <repo>/build/llamacpp),
#              LATHE_LLAMACPP_JOBS (ninja -j, default 2), LATHE_LLAMACPP_FORCE=1 (ignore the stamp).
# Idempotent: the stamp (sha256 of this script, the dumper's source and the sdist) is written last;
# when it matches and every binary exists nothing is done. Otherwise the (incremental) build runs
# again; an interrupted download or extraction is redone from scratch.
# Takes about 1.5 min on 2 cores from nothing (download 4 s, llama.cpp build 70 s; CPU backend
# only, -march=native).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
CACHE="${LATHE_MODEL_CACHE:-${REPO_ROOT}/build/model-cache}"
OUT="${LATHE_LLAMACPP_DIR:-${REPO_ROOT}/build/llamacpp}"
JOBS="${LATHE_LLAMACPP_JOBS:-2}"

# llama-cpp-python 0.3.8 vendors ggerganov/llama.cpp@7841fc723e059d1fd9640e5c0ef19050fcc7c698
# (its CHANGELOG); the sdist has no .git, so llama.cpp's own build info says "unknown".
SDIST_VERSION="0.3.8"
SDIST="llama_cpp_python-${SDIST_VERSION}.tar.gz"
SDIST_SHA256="31c91323b555c025a76a30923cead9f5695da103dd68c15cdbb4509b17f0ed77"
TARGETS=(llama-quantize llama-tokenize llama-perplexity llama-bench)
DUMPER=llamacpp-logits

fail() { echo "build_llamacpp.sh: $*" >&2; exit 1; }
T_START=$(date +%s)

for tool in cmake ninja tar sha256sum; do
  command -v "${tool}" >/dev/null || fail "'${tool}' is not on PATH (apt-get install cmake ninja-build)"
done
if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then PY="${REPO_ROOT}/.venv/bin/python"; else PY="python3"; fi

STAMP="${OUT}/.stamp"
want="$(cat "${BASH_SOURCE[0]}" "${SCRIPT_DIR}/llamacpp_logits.cpp" | sha256sum | cut -d' ' -f1)-${SDIST_SHA256:0:16}"
all_built() { for t in "${TARGETS[@]}" "${DUMPER}"; do [[ -x "${OUT}/bin/${t}" ]] || return 1; done; }
if [[ "${LATHE_LLAMACPP_FORCE:-0}" != 1 && -f "${STAMP}" && "$(cat "${STAMP}")" == "${want}" ]] && all_built; then
  echo "build_llamacpp.sh: up to date (${OUT}/bin, stamp ${want:0:12}), nothing to do"
  exit 0
fi
rm -f "${STAMP}"
mkdir -p "${CACHE}" "${OUT}/bin"

# 1. The sdist, pinned by version and sha256.
sha_ok() { [[ -f "$1" && "$(sha256sum "$1" | cut -d' ' -f1)" == "${SDIST_SHA256}" ]]; }
if ! sha_ok "${CACHE}/${SDIST}"; then
  rm -f "${CACHE}/${SDIST}"
  echo "== download llama-cpp-python==${SDIST_VERSION} (sdist) -> ${CACHE}"
  req="$(mktemp)"
  trap 'rm -f "${req}"' EXIT
  echo "llama-cpp-python==${SDIST_VERSION} --hash=sha256:${SDIST_SHA256}" >"${req}"
  # --no-binary for this package only: pip still prepares the sdist's metadata, and with
  # --no-binary :all: it first builds every build dependency (scikit-build-core, ...) from source,
  # which took 197 s against 4 s here for the same file.
  "${PY}" -m pip download --no-deps --no-binary llama-cpp-python --require-hashes -r "${req}" -d "${CACHE}" \
    || fail "pip download of llama-cpp-python==${SDIST_VERSION} failed"
  sha_ok "${CACHE}/${SDIST}" || fail "${CACHE}/${SDIST}: sha256 is not ${SDIST_SHA256}"
fi
echo "== sdist ${CACHE}/${SDIST} sha256 ${SDIST_SHA256}"

# 2. Sources: extracted next to the output, moved into place only once complete.
SRC="${OUT}/src"
if [[ ! -f "${SRC}/.extracted-${SDIST_SHA256:0:16}" ]]; then
  echo "== extract -> ${SRC}"
  rm -rf "${SRC}" "${SRC}.partial" "${OUT}/build"
  mkdir -p "${SRC}.partial"
  tar -xzf "${CACHE}/${SDIST}" -C "${SRC}.partial" --strip-components=1
  touch "${SRC}.partial/.extracted-${SDIST_SHA256:0:16}"
  mv "${SRC}.partial" "${SRC}"
fi
LLAMA_SRC="${SRC}/vendor/llama.cpp"
[[ -f "${LLAMA_SRC}/include/llama.h" ]] || fail "${LLAMA_SRC}/include/llama.h is missing; delete ${SRC} and re-run"
LLAMA_COMMIT="$(sed -n 's/.*ggerganov\/llama.cpp@\([0-9a-f]\{40\}\).*/\1/p' "${SRC}/CHANGELOG.md" | head -1)"

# The sources sit inside the Lathe checkout: without a ceiling, llama.cpp's build-info step would
# find Lathe's .git and stamp Lathe's commit into the binaries.
export GIT_CEILING_DIRECTORIES="${OUT}"

# 3. llama.cpp, CPU only, static, Release.
BUILD="${OUT}/build"
echo "== configure ${BUILD}"
t0=$(date +%s)
cmake -S "${LLAMA_SRC}" -B "${BUILD}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DGGML_CCACHE=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=ON >"${OUT}/configure.log" 2>&1 \
  || { tail -30 "${OUT}/configure.log" >&2; fail "cmake configure failed (log: ${OUT}/configure.log)"; }
echo "== build ${TARGETS[*]} (ninja -j${JOBS})"
ninja -C "${BUILD}" -j "${JOBS}" "${TARGETS[@]}" llama ggml ggml-base ggml-cpu \
  || fail "ninja failed in ${BUILD}"
for t in "${TARGETS[@]}"; do install -m 755 "${BUILD}/bin/${t}" "${OUT}/bin/${t}"; done
t_llama=$(( $(date +%s) - t0 ))

# 4. The dumper, with the compiler and flags llama.cpp was built with, against its static libs.
CXX="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "${BUILD}/CMakeCache.txt")"
[[ -n "${CXX}" ]] || CXX=c++
echo "== ${DUMPER} (${CXX})"
libs=("${BUILD}/src/libllama.a" "${BUILD}/ggml/src/libggml.a" "${BUILD}/ggml/src/libggml-cpu.a"
      "${BUILD}/ggml/src/libggml-base.a")
for lib in "${libs[@]}"; do [[ -f "${lib}" ]] || fail "${lib} was not built"; done
openmp=()
grep -q '^GGML_OPENMP:BOOL=ON' "${BUILD}/CMakeCache.txt" && openmp=(-fopenmp)
"${CXX}" -std=c++17 -O2 -march=native -DLATHE_LLAMACPP_COMMIT="\"${LLAMA_COMMIT:-unknown}\"" \
  -DLATHE_LLAMACPP_SDIST="\"llama-cpp-python ${SDIST_VERSION}\"" \
  -I"${LLAMA_SRC}/include" -I"${LLAMA_SRC}/ggml/include" \
  "${SCRIPT_DIR}/llamacpp_logits.cpp" -o "${OUT}/bin/${DUMPER}.tmp" \
  "${libs[@]}" "${openmp[@]}" -lpthread -lm -ldl \
  || fail "compiling ${SCRIPT_DIR}/llamacpp_logits.cpp failed"
mv "${OUT}/bin/${DUMPER}.tmp" "${OUT}/bin/${DUMPER}"

cat >"${OUT}/VERSION" <<EOF
llama-cpp-python ${SDIST_VERSION} sdist (${SDIST}, sha256 ${SDIST_SHA256})
llama.cpp ggerganov/llama.cpp@${LLAMA_COMMIT:-unknown}
EOF
all_built || fail "some binaries are missing from ${OUT}/bin"
echo "${want}" >"${STAMP}"
echo "build_llamacpp.sh: ok in $(( $(date +%s) - T_START )) s (llama.cpp configure+build ${t_llama} s); binaries in ${OUT}/bin"
