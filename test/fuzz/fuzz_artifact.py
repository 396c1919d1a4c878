"""Compiles two generated models to artifacts and runs lathe-artifact-fuzz on
each (fixed seeds): mutants behind a valid checksum must be rejected or run,
never crash the process."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import models_or_skip  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--fuzzer", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    models_or_skip(args.models)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, family in enumerate(["bert-tiny", "llama-tiny"]):
            model = glob.glob(os.path.join(args.models, "generated", family, "*.opset17.onnx"))[0]
            artifact = os.path.join(tmp, family + ".lathe")
            subprocess.run([args.lathe, "compile", model, "-o", artifact], check=True, capture_output=True)
            p = subprocess.run([args.fuzzer, artifact, str(args.iterations), str(i + 1)], capture_output=True, text=True,
                               timeout=600, env={**os.environ, "TMPDIR": tmp})
            print(f"{family}: rc={p.returncode} {p.stdout.strip()} {p.stderr.strip()[-300:]}")
            failed |= p.returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
