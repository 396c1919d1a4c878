#!/usr/bin/env bash
# Creates (or checks) the Python venv used by scripts/models/*.py.
#
#   venv:   ${LATHE_VENV:-<repo>/.venv}, made by Debian's /usr/bin/python3 with
#           --system-site-packages so that it sees Debian's torch 1.13 and numpy.
#   pins:   the PINS array below; numpy is constrained to Debian's version so pip can
#           never replace it (a pip numpy 2 breaks Debian's torch), and torch must come
#           from Debian (a pip torch in the venv is an error).
#
# Idempotent: when the venv exists and every pin is installed at its version, nothing
# is downloaded and the script only re-checks the environment.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
VENV="${LATHE_VENV:-${REPO_ROOT}/.venv}"
SYS_PY=/usr/bin/python3

# Pinned versions (verified together on Debian 12, Python 3.11, torch 1.13.1, numpy 1.24.2).
#  transformers 4.49.0 is the newest release that still imports with torch 1.13
#    (4.50.0 needs torch.distributed.tensor; 4.53+ refuse torch < 2.1).
#  onnx 1.22.0 is the newest release whose wheel still carries
#    onnx/backend/test/data/node (1.23.x dropped it).
PINS=(
  "transformers==4.49.0"
  "tokenizers==0.21.4"
  "huggingface-hub==0.36.2"
  "safetensors==0.8.0"
  "onnx==1.22.0"
  "onnxruntime==1.31.1"
  "gguf==0.19.0"
  "protobuf==7.36.2"
  "ml-dtypes==0.5.4"
  # transitive dependencies, pinned so that a fresh venv is the one tested
  "filelock==4.2.11"
  "flatbuffers==25.12.19"
  "fsspec==2026.9.0"
  "hf-xet==1.8.0"
  "packaging==26.3"
  "regex==2026.11.15"
  "tqdm==4.70.1"
  "typing-extensions==4.16.0"
)

die() { echo "setup_venv.sh: ERROR: $*" >&2; exit 1; }

[[ -x "${SYS_PY}" ]] || die "${SYS_PY} not found. Install Debian's Python: apt-get install python3 python3-venv python3-numpy python3-torch"
"${SYS_PY}" -c 'import venv, ensurepip' 2>/dev/null \
  || die "${SYS_PY} has no working venv/ensurepip module. Install it: apt-get install python3-venv"
"${SYS_PY}" -c 'import numpy' 2>/dev/null \
  || die "Debian numpy missing for ${SYS_PY}. Install it: apt-get install python3-numpy"
"${SYS_PY}" -c 'import torch' 2>/dev/null \
  || die "Debian torch missing for ${SYS_PY}. Install it: apt-get install python3-torch (torch 1.13.1 CPU)"

NUMPY_VER="$("${SYS_PY}" -c 'import numpy; print(numpy.__version__)')"
NUMPY_DIR="$("${SYS_PY}" -c 'import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))')"
TORCH_DIR="$("${SYS_PY}" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')"

# --- create the venv ------------------------------------------------------------------
if [[ -e "${VENV}" && ! -f "${VENV}/pyvenv.cfg" ]]; then
  die "${VENV} exists but is not a venv; remove it or set LATHE_VENV"
fi
if [[ -f "${VENV}/pyvenv.cfg" ]]; then
  if ! grep -Eq '^include-system-site-packages *= *true' "${VENV}/pyvenv.cfg" \
     || ! grep -Eq '^home *= */usr/bin *$' "${VENV}/pyvenv.cfg"; then
    die "${VENV} was not created by '${SYS_PY} -m venv --system-site-packages'; remove it (rm -rf ${VENV}) and re-run"
  fi
else
  echo "setup_venv.sh: creating venv ${VENV}"
  "${SYS_PY}" -m venv --system-site-packages "${VENV}"
fi
VPY="${VENV}/bin/python"
[[ -x "${VPY}" ]] || die "${VPY} missing; remove ${VENV} and re-run"

# --- install pins unless already satisfied ----------------------------------------------
missing="$("${VPY}" - "${PINS[@]}" <<'EOF'
import sys
from importlib import metadata
out = []
for pin in sys.argv[1:]:
    name, ver = pin.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != ver:
        out.append(pin)
print(" ".join(out))
EOF
)"
if [[ -n "${missing}" ]]; then
  echo "setup_venv.sh: installing ${missing}"
  CONSTRAINTS="$(mktemp)"
  trap 'rm -f "${CONSTRAINTS}"' EXIT
  # numpy stays Debian's; everything else pinned explicitly.
  printf 'numpy==%s\n' "${NUMPY_VER}" >"${CONSTRAINTS}"
  printf '%s\n' "${PINS[@]}" >>"${CONSTRAINTS}"
  "${VPY}" -m pip install --disable-pip-version-check --no-input -c "${CONSTRAINTS}" "${PINS[@]}" \
    || die "pip install failed (is PyPI reachable?)"
else
  echo "setup_venv.sh: ${VENV} already has all pinned packages"
fi

# --- verify the result -------------------------------------------------------------------
"${VPY}" - "${NUMPY_VER}" "${NUMPY_DIR}" "${TORCH_DIR}" "${PINS[@]}" <<'EOF' || die "venv check failed (see above)"
import os, sys
from importlib import metadata
numpy_ver, numpy_dir, torch_dir, pins = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
bad = []
import numpy, torch
if numpy.__version__ != numpy_ver or not numpy.__file__.startswith(numpy_dir + os.sep):
    bad.append(f"numpy is {numpy.__version__} from {numpy.__file__}; expected Debian's {numpy_ver} under {numpy_dir}")
if not torch.__file__.startswith(torch_dir + os.sep):
    bad.append(f"torch comes from {torch.__file__}, not Debian's {torch_dir}; a pip torch is in the venv: remove it")
for pin in pins:
    name, ver = pin.split("==")
    have = metadata.version(name)
    if have != ver:
        bad.append(f"{name} is {have}, pinned {ver}")
import onnx, onnxruntime, transformers, gguf, safetensors, tokenizers  # noqa: F401
from transformers import BertModel, GPT2Model, LlamaModel, LlamaConfig  # noqa: F401
if "num_key_value_heads" not in LlamaConfig().to_dict():
    bad.append("transformers LlamaConfig lacks num_key_value_heads")
node_dir = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
if not os.path.isdir(node_dir):
    bad.append(f"onnx wheel lacks {node_dir}")
if bad:
    print("\n".join("  " + b for b in bad), file=sys.stderr)
    sys.exit(1)
print(f"setup_venv.sh: ok: python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, transformers {transformers.__version__}")
EOF
