# Shared by scripts/setup.sh and scripts/test.sh: dependency install and build.
# shellcheck shell=bash

LATHE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LATHE_BUILD="${LATHE_BUILD:-${LATHE_ROOT}/build}"

# Debian packages the project needs (see ../shared/BUILD-NOTES.md).
LATHE_APT_PACKAGES=(
  cmake ninja-build g++ git
  llvm-19-dev libmlir-19-dev mlir-19-tools llvm-19-tools
  libeigen3-dev libcli11-dev catch2 libprotobuf-dev protobuf-compiler libonnx-dev
  libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev libyaml-cpp-dev libdnnl-dev
  python3 python3-venv python3-numpy python3-onnx python3-torch libonnx-testdata
)

lathe_install_deps() {
  local missing=()
  for p in "${LATHE_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "== dependencies: all ${#LATHE_APT_PACKAGES[@]} Debian packages present"
    return 0
  fi
  echo "== dependencies: installing ${missing[*]}"
  if ! command -v apt-get >/dev/null; then
    echo "error: apt-get not found; install these Debian packages by hand: ${missing[*]}" >&2
    return 1
  fi
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "error: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
      return 1
    fi
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

lathe_build() {
  echo "== build: ${LATHE_BUILD}"
  mkdir -p "${LATHE_BUILD}"
  local log="${LATHE_BUILD}/configure.log"
  cmake -S "${LATHE_ROOT}" -B "${LATHE_BUILD}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE=/usr/bin/python3 >"${log}" 2>&1 \
    || { cat "${log}"; echo "error: cmake configure failed" >&2; return 1; }
  grep -E "^-- Lathe:" "${log}" || true
  cmake --build "${LATHE_BUILD}" -j "$(nproc)"
}

lathe_prepare_models() {
  "${LATHE_ROOT}/scripts/models/prepare.sh"
}
