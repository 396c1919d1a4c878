"""Compiled artifacts reproduce the reference outputs (torch) of every
generated model at every opset and of the real MiniLM, at the export shape
and at other batch and sequence sizes:
|lathe - ref| <= 1e-4 + 1e-4 * |ref| elementwise. Two threads match one
thread within 1e-6."""
import glob
import os
import tempfile

import numpy as np

from lathe_test_util import Checker, parse_args, run

ATOL = RTOL = 1e-4


def reference_dirs(model_dir):
    return sorted(d for d in glob.glob(os.path.join(model_dir, "*")) if os.path.isdir(os.path.join(d, "inputs")))


def run_model(lathe, artifact, ref_dir, out_dir, threads=1):
    cmd = [lathe, "run", artifact, "--output-dir", out_dir, "--threads", str(threads)]
    for f in sorted(glob.glob(os.path.join(ref_dir, "inputs", "*.npy"))):
        cmd += ["--input", f"{os.path.basename(f)[:-4]}={f}"]
    return run(cmd)


def compare(c, label, ref_dir, out_dir):
    worst = 0.0
    for ref_file in sorted(glob.glob(os.path.join(ref_dir, "outputs", "*.npy"))):
        name = os.path.basename(ref_file)
        got_file = os.path.join(out_dir, name)
        if not os.path.exists(got_file):
            c.expect(False, f"{label}: output {name} missing")
            continue
        ref, got = np.load(ref_file), np.load(got_file)
        c.expect(ref.shape == got.shape, f"{label}: {name} shape {got.shape} != {ref.shape}")
        if ref.shape != got.shape:
            continue
        excess = np.abs(got.astype(np.float64) - ref) - (ATOL + RTOL * np.abs(ref))
        err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        worst = max(worst, err)
        c.expect(bool(np.all(excess <= 0)) and np.all(np.isfinite(got)),
                 f"{label}: {name} max |diff| {err:.3e} exceeds {ATOL} + {RTOL}*|ref|")
    return worst


def main():
    args = parse_args()
    c = Checker()
    files = sorted(glob.glob(os.path.join(args.models, "generated", "*", "*.onnx")) +
                   glob.glob(os.path.join(args.models, "real", "*", "*.onnx")) +
                   glob.glob(os.path.join(args.models, "external_data", "small", "*.onnx")))
    c.expect(len(files) >= 20, f"found only {len(files)} models")
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            name = os.path.basename(path)
            artifact = os.path.join(tmp, name + ".lathe")
            rc, _, err = run([args.lathe, "compile", path, "-o", artifact])
            c.expect(rc == 0, f"{name}: compile failed: {err.strip()[:400]}")
            if rc != 0:
                continue
            refs = reference_dirs(os.path.dirname(path))
            c.expect(len(refs) >= 2, f"{name}: fewer than two reference shapes")
            for ref in refs:
                out = os.path.join(tmp, "out", name, os.path.basename(ref))
                os.makedirs(out, exist_ok=True)
                rc, _, err = run_model(args.lathe, artifact, ref, out)
                label = f"{name} @ {os.path.basename(ref)}"
                c.expect(rc == 0, f"{label}: run failed: {err.strip()[:400]}")
                if rc == 0:
                    print(f"{label}: max |diff| = {compare(c, label, ref, out):.3e}")
        # Threads: 2 threads match 1 thread within 1e-6 on the real model.
        minilm = [f for f in files if "minilm" in f and "opset17" in f]
        if minilm:
            artifact = os.path.join(tmp, os.path.basename(minilm[0]) + ".lathe")
            ref = reference_dirs(os.path.dirname(minilm[0]))[0]
            outs = []
            for threads in (1, 2):
                out = os.path.join(tmp, f"threads{threads}")
                os.makedirs(out, exist_ok=True)
                rc, _, err = run_model(args.lathe, artifact, ref, out, threads)
                c.expect(rc == 0, f"threads={threads}: {err}")
                outs.append(out)
            for f in glob.glob(os.path.join(outs[0], "*.npy")):
                a, b = np.load(f), np.load(os.path.join(outs[1], os.path.basename(f)))
                d = float(np.max(np.abs(a - b)))
                print(f"threads 2 vs 1, {os.path.basename(f)}: max |diff| = {d:.3e}")
                c.expect(d <= 1e-6, f"threads 2 vs 1 differ by {d:.3e} in {os.path.basename(f)}")
    c.finish()


if __name__ == "__main__":
    main()
