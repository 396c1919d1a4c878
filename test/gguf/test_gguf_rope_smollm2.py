#!/usr/bin/env python3
"""Rotary-embedding variants of the GGUF Llama importer on 2-block copies of the real SmolLM2-135M
Q4_1 file, written by scripts/models/make_gguf_variants.py into a temporary directory (all metadata
and the tokenizer kept, blocks 0 and 1, tensors copied in their own ggml types):

    base       unscaled rope (base 100000, head dim 64)
    linear2    llama.rope.scaling.type = "linear", llama.rope.scaling.factor = 2
    ropefreqs  rope_freqs.weight [32] (1.0 for the 8 highest frequencies, rising to 8.0)
    yarn       llama.rope.scaling.type = "yarn"

The inputs are prompt ids of test/gguf/smollm2_llamacpp_logits.json: A = its first 40 ids at
batch 1, B = batch 2 of length 17 (row 0 ids 40..56; row 1 ids 5..16 then 5 positions of right
padding, attention_mask 0). For base, linear2 and ropefreqs:

a. `lathe check` exits 0 and its summary names the variant ("rope base 100000," with no scaling
   for base, "(linear scaling 2)", "with rope_freqs");
b. `lathe compile`, then `lathe run` on A and B: the logits of every unpadded position are within
   TOLERANCE of llama_numpy_ref.forward on that row's unpadded ids (float64 numpy from the
   architecture's definition, llama.cpp's adjacent-pair rope on the stored Q/K rows with
   angle = pos · base^(-2i/64) / factor / rope_freqs[i]; Lathe un-permutes the rows and uses NEOX
   rope, so the two routes are independent);
c. the scaling is really applied: linear2's and ropefreqs' logits on A differ from base's by more
   than MIN_EFFECT (max |Δ|);
d. linear2 through the KV cache: `lathe run --incremental 1` on A equals the full run within
   INCREMENTAL_TOLERANCE at every position.
e. yarn: `lathe check` exits 1 naming 'yarn', and `lathe compile` fails naming it too.

    python3 test/gguf/test_gguf_rope_smollm2.py --lathe build/bin/lathe --models build/models \\
        --python .venv/bin/python

Needs numpy and the gguf package: re-executes itself under --python (the repo venv) when started by
another interpreter. Exit 77 (skip) when the venv or the model is missing, unless CI=true (then 1).
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scripts", "models"))
from lathe_test_util import Checker, parse_args, reexec_with, run, skip_or_fail  # noqa: E402

# fp32 (Lathe) against float64 (numpy), different summation orders, 2 blocks, logits of magnitude ~20.
TOLERANCE = 1e-3
# The same artifact, full sequence vs one token at a time through the KV cache.
INCREMENTAL_TOLERANCE = 1e-4
# A scaled variant's logits must move at least this much from the unscaled model's.
MIN_EFFECT = 1e-2

extra = argparse.ArgumentParser(add_help=False)
extra.add_argument("--python", default="", help="interpreter with numpy and gguf (the repo venv)")
options, rest = extra.parse_known_args()

try:
    import gguf  # noqa: F401
    import numpy as np
except ImportError:
    reexec_with(options.python, "LATHE_ROPE_VARIANTS_REEXEC",
                f"numpy/gguf are not importable and no venv at {options.python!r}")

import llama_numpy_ref  # noqa: E402
import make_gguf_variants  # noqa: E402

sys.argv = [sys.argv[0]] + rest
args = parse_args()

source = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
if not os.path.exists(source):
    skip_or_fail(f"{source} is missing (run scripts/models/prepare.sh)")
with open(os.path.join(HERE, "smollm2_llamacpp_logits.json"), encoding="utf-8") as f:
    prompt = json.load(f)["ids"]
PAD = 2  # tokenizer.ggml.padding_token_id
A = np.array([prompt[:40]], dtype=np.int64)
B = np.array([prompt[40:57], prompt[5:17] + [PAD] * 5], dtype=np.int64)
B_MASK = np.array([[1] * 17, [1] * 12 + [0] * 5], dtype=np.int64)
SUMMARY = {"base": "rope base 100000,", "linear2": "rope base 100000 (linear scaling 2)",
           "ropefreqs": "rope base 100000 with rope_freqs"}

checker = Checker()
check = checker.expect
started = time.time()


def lathe_run(artifact, tmp, name, ids, mask, incremental=0):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "ids.npy"), ids)
    np.save(os.path.join(d, "mask.npy"), mask)
    cmd = [args.lathe, "run", artifact, "--input", f"input_ids={d}/ids.npy", "--input",
           f"attention_mask={d}/mask.npy", "--output-dir", d, "--threads", "2"]
    if incremental:
        cmd += ["--incremental", str(incremental)]
    rc, _, err = run(cmd)
    check(rc == 0, f"lathe run {name}: rc={rc} {err.strip()[-400:]}")
    return np.load(os.path.join(d, "logits.npy")) if rc == 0 else None


with tempfile.TemporaryDirectory(prefix="lathe-rope-variants-") as tmp:
    t = time.time()
    paths = make_gguf_variants.write_variants(source, tmp)
    print(f"variants written in {time.time() - t:.1f} s: {', '.join(paths)}")

    full_a = {}
    for variant in ("base", "linear2", "ropefreqs"):
        path = paths[variant]
        # a. the summary names the variant.
        rc, out, err = run([args.lathe, "check", path])
        summary = (out + err).strip()
        check(rc == 0 and SUMMARY[variant] in summary, f"{variant}: lathe check rc={rc}, expected "
              f"'{SUMMARY[variant]}' in: {summary[:400]}")
        # b. compile, run A and B, compare with numpy.
        artifact = os.path.join(tmp, variant + ".lathe")
        rc, _, err = run([args.lathe, "compile", path, "-o", artifact])
        check(rc == 0, f"{variant}: lathe compile rc={rc}: {err.strip()[-400:]}")
        if rc != 0:
            continue
        got_a = lathe_run(artifact, tmp, variant + "_a", A, np.ones_like(A))
        got_b = lathe_run(artifact, tmp, variant + "_b", B, B_MASK)
        errors = []
        for name, ids, mask, got in (("A", A, np.ones_like(A), got_a), ("B", B, B_MASK, got_b)):
            if got is None:
                continue
            for row in range(ids.shape[0]):
                n = int(mask[row].sum())
                want = llama_numpy_ref.forward(path, ids[row, :n])
                diff = np.abs(got[row, :n].astype(np.float64) - want)
                err_ = float(diff.max())
                errors.append(f"{name}[{row}] ({n} positions) {err_:.2e}")
                check(err_ <= TOLERANCE, f"{variant} {name} row {row}: Lathe vs numpy max |diff| {err_:.3g} at "
                      f"position {int(diff.max(axis=1).argmax())} (tolerance {TOLERANCE})")
        print(f"{variant:9s} Lathe vs numpy max |diff|: {', '.join(errors)} (tolerance {TOLERANCE})")
        if got_a is not None:
            full_a[variant] = got_a
            # d. the KV-cache path with scaled positions.
            if variant == "linear2":
                inc = lathe_run(artifact, tmp, variant + "_a_inc", A, np.ones_like(A), incremental=1)
                if inc is not None:
                    diff = float(np.abs(inc - got_a).max())
                    print(f"linear2   --incremental 1 vs full run on A: max |diff| {diff:.2e} "
                          f"(tolerance {INCREMENTAL_TOLERANCE})")
                    check(diff <= INCREMENTAL_TOLERANCE, f"linear2: incremental logits differ from the full run "
                          f"by {diff:.3g}")

    # c. the scaling changes the logits.
    for variant in ("linear2", "ropefreqs"):
        if variant in full_a and "base" in full_a:
            delta = float(np.abs(full_a[variant] - full_a["base"]).max())
            print(f"{variant:9s} vs base on A: max |Δ logits| {delta:.3g} (must exceed {MIN_EFFECT})")
            check(delta > MIN_EFFECT, f"{variant}: logits within {delta:.3g} of the unscaled model's: "
                  f"the scaling is not applied")

    # e. YaRN is refused by name.
    rc, out, err = run([args.lathe, "check", paths["yarn"]])
    check(rc == 1 and "yarn" in out + err, f"yarn: lathe check rc={rc} (expected 1 naming 'yarn'): "
          f"{(out + err).strip()[:400]}")
    rc, out, err = run([args.lathe, "compile", paths["yarn"], "-o", os.path.join(tmp, "yarn.lathe")])
    check(rc != 0 and "yarn" in out + err, f"yarn: lathe compile rc={rc} (expected a failure naming 'yarn'): "
          f"{(out + err).strip()[:400]}")
    print(f"yarn      lathe compile rc={rc}: {(out + err).strip().splitlines()[-1][:200] if (out + err).strip() else ''}")

print(f"total {time.time() - started:.1f} s")
checker.finish()
