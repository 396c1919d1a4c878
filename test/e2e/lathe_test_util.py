"""Shared helpers for the end-to-end tests (stdlib only: they run under any python3)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def skip_or_fail(reason):
    """Skips (exit 77) with the reason; under CI=true nothing may skip, so it fails."""
    if os.environ.get("CI", "").lower() == "true":
        print(f"FAIL (CI=true, so no skip): {reason}")
        sys.exit(1)
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def reexec_with(python, marker, reason):
    """Re-runs this script once under `python` (the repo venv, which has the pip
    packages); when that is not possible, skip_or_fail(reason)."""
    if python and os.path.exists(python) and not os.environ.get(marker):
        os.environ[marker] = "1"
        os.execv(python, [python] + sys.argv)
    skip_or_fail(reason)


def models_or_skip(models_dir):
    """The manifest, or skip (exit 77) / fail under CI=true when models are missing."""
    manifest = os.path.join(models_dir, "manifest.json")
    if not os.path.exists(manifest):
        skip_or_fail(f"models not prepared: {manifest} missing (run scripts/models/prepare.sh)")
    with open(manifest) as f:
        return json.load(f)


def run(cmd, timeout=600):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def supported_isas(lathe):
    """The CPU instruction-set levels the runtime can use on this machine, lowest first, as
    `lathe --version` reports them (after LATHE_ISA_MAX). A level this CPU lacks (CI's machines
    have no AVX-512) cannot be tested here: callers print that they left it out."""
    rc, out, err = run([lathe, "--version"])
    m = re.search(r"CPU instruction sets: ([a-z0-9 ]+);", out + err)
    if rc != 0 or not m:
        raise RuntimeError(f"`{lathe} --version` did not name the CPU instruction sets: {(out + err).strip()[-300:]}")
    levels = m.group(1).split()
    for level in ("baseline", "avx2", "avx512"):
        if level not in levels:
            print(f"note: instruction-set level {level} is not available on this CPU; its kernels are not run here")
    return levels


def op_counts(mlir_text):
    counts = {}
    for m in re.finditer(r"= (lathe\.[a-z_]+)", mlir_text):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


_SCRATCH = []


def scratch_dir(prefix):
    """A temporary folder that Checker.finish removes when every check passed (artifacts of real
    models take gigabytes: a suite run must not fill /tmp); kept on failure, or with LATHE_KEEP_TMP=1."""
    path = tempfile.mkdtemp(prefix=prefix)
    _SCRATCH.append(path)
    return path


class Checker:
    def __init__(self):
        self.failures = []
        self.checks = 0

    def expect(self, cond, what):
        self.checks += 1
        if not cond:
            self.failures.append(what)
            print("  FAIL: " + what)

    def finish(self):
        print(f"{self.checks} checks, {len(self.failures)} failed")
        for path in _SCRATCH:
            if self.failures or os.environ.get("LATHE_KEEP_TMP") == "1":
                print(f"scratch files kept in {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)
        sys.exit(1 if self.failures else 0)


def parse_args(*required):
    """--lathe and --models for every e2e test, plus the `required` options a test names (e.g.
    "--tokenize"); skips (or fails under CI) without models."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--models", required=True)
    for option in required:
        ap.add_argument(option, required=True)
    args = ap.parse_args()
    models_or_skip(args.models)
    return args


def require_files(*paths):
    """Skips (fails under CI) naming the first missing file."""
    for path in paths:
        if not os.path.exists(path):
            skip_or_fail(f"{path} is missing (run scripts/models/prepare.sh)")
