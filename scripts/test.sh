#!/usr/bin/env bash
# Self-sufficient test run: installs what is missing, builds, prepares the
# models, runs every test (lit, end-to-end model checks, conformance) and
# prints how many were skipped and why. With CI=true a skip is a failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

lathe_install_deps
lathe_build
if ! lathe_prepare_models; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "error: model preparation failed and CI=true: the model tests cannot be skipped" >&2
    exit 1
  fi
  echo "warning: model preparation failed; model tests will skip" >&2
fi

cd "${LATHE_BUILD}"
set +e
ctest --output-on-failure --timeout 1800 -j 1 2>&1 | tee "${LATHE_BUILD}/ctest.log"
rc=${PIPESTATUS[0]}
set -e
skipped=$(grep -cE "\*\*\*Skipped|Not Run" "${LATHE_BUILD}/ctest.log" || true)
echo
echo "== skipped tests: ${skipped}"
grep -E "\*\*\*Skipped|Not Run" "${LATHE_BUILD}/ctest.log" | sed 's/^/   /' || true
# Why: every skipping test prints a "SKIP: <reason>" line.
if [[ "${skipped}" != "0" ]]; then
  grep -hE "SKIP(\(no-gpu\))?:" "${LATHE_BUILD}/Testing/Temporary/LastTest.log" 2>/dev/null | sort -u | sed 's/^/   why: /' || true
fi
# GPU tests (named gpu_*) skip honestly on machines without a GPU; every other
# skip fails under CI=true. A CUDA backend that was not built fails e2e_device.
required_skipped=$(grep -E "\*\*\*Skipped|Not Run" "${LATHE_BUILD}/ctest.log" | grep -cvE "Test +#[0-9]+: gpu_" || true)
if [[ "${skipped}" != "${required_skipped}" ]]; then
  echo "== $((skipped - required_skipped)) GPU test(s) skipped: this machine has no usable CUDA device"
fi
if [[ "${CI:-}" == "true" && "${required_skipped}" != "0" ]]; then
  echo "error: CI=true and ${required_skipped} required test(s) skipped; every required test must run" >&2
  exit 1
fi
exit "${rc}"
