#!/usr/bin/env python3
"""SmolLM2-135M through Lathe against llama.cpp and an independent numpy forward pass (issue #4).

The golden file smollm2_llamacpp_logits.json (scripts/models/make_llamacpp_refs.py) holds a 57-token
prompt (llama.cpp's tokenization, no BOS) and, for every position, the top-5 ids and logits that
llama.cpp (llama-cpp-python 0.3.8's vendored sources) computes on an F32 copy of the Q4_1 GGUF, with
an f32 KV cache and 1 thread. The Q4_1 file is compiled by `lathe compile` (or --artifact is used)
and run single-threaded on the prompt:

i.   Lathe's logits at the golden top-5 ids of every position are within TOLERANCE of llama.cpp's,
     and Lathe's top-1 equals llama.cpp's at every position (the golden prompt's smallest top-1
     lead is 0.017, so a top-1 difference is not a tie within the tolerance);
ii.  llama_numpy_ref.forward (float64 numpy from the architecture's definition, reading the Q4_1
     file with the gguf package) agrees with Lathe within TOLERANCE over all logits, and with
     llama.cpp's golden top-5 within TOLERANCE;
iii. when build/models/llamacpp/smollm2-135m-instruct-f32.gguf exists (written by
     make_llamacpp_refs.py; CI has no llama.cpp build, so it is optional), `lathe compile` of it
     gives the Q4_1 artifact's logits within SAME_WEIGHTS_TOLERANCE: both hold the same
     dequantized weights.

    python3 test/gguf/test_gguf_llamacpp.py --lathe build/bin/lathe --models build/models \\
        --python .venv/bin/python [--artifact smollm2-q4_1.lathe] [--f32 smollm2-135m-instruct-f32.gguf]

Needs numpy and the gguf package: re-executes itself under --python (the repo venv) when started by
another interpreter. Exit 77 (skip) when the venv or the model is missing, unless CI=true (then 1).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
from lathe_test_util import Checker, parse_args, reexec_with, skip_or_fail  # noqa: E402

GOLDEN = os.path.join(HERE, "smollm2_llamacpp_logits.json")
# fp32 against fp32 (llama.cpp, Lathe) and float64 (numpy), different summation orders, 30 blocks,
# logits of magnitude ~20: the bound.
TOLERANCE = 1e-3
# The same weights (Q4_1 dequantized at import vs. dequantized by llama-quantize) through the same
# compiled graph; only the import path differs.
SAME_WEIGHTS_TOLERANCE = 1e-5

# --python and --artifact are this test's own; lathe_test_util.parse_args takes --lathe and --models.
extra = argparse.ArgumentParser(add_help=False)
extra.add_argument("--python", default="", help="interpreter with numpy and gguf (the repo venv)")
extra.add_argument("--artifact", default="", help="a compiled SmolLM2 Q4_1 .lathe to use instead of compiling")
extra.add_argument("--f32", default="", help="the F32 copy for iii (default: MODELS/llamacpp/"
                   "smollm2-135m-instruct-f32.gguf)")
options, rest = extra.parse_known_args()

try:
    import gguf  # noqa: F401
    import numpy as np
except ImportError:
    reexec_with(options.python, "LATHE_LLAMACPP_TEST_REEXEC", f"numpy/gguf are not importable and no venv at {options.python!r}")

import llama_numpy_ref  # noqa: E402

sys.argv = [sys.argv[0]] + rest
args = parse_args()

model_dir = os.path.join(args.models, "real", "smollm2-135m-instruct")
q4_model = os.path.join(model_dir, "smollm2-135m-instruct-q4_1.gguf")
f32_model = options.f32 or os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
if not os.path.exists(q4_model):
    skip_or_fail(f"{q4_model} is missing (run scripts/models/prepare.sh)")

with open(GOLDEN, encoding="utf-8") as f:
    golden = json.load(f)
ids = golden["ids"]
golden_ids = np.array([row["ids"] for row in golden["top5"]], dtype=np.int64)        # [n, 5]
golden_logits = np.array([row["logits"] for row in golden["top5"]], dtype=np.float64)  # [n, 5]
positions = np.arange(len(ids))[:, None]

checker = Checker()
check = checker.expect


def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


def compile_model(gguf_path, artifact):
    start = time.time()
    rc, _, err = run([args.lathe, "compile", gguf_path, "-o", artifact])
    check(rc == 0, f"lathe compile {gguf_path}: rc={rc} {err.strip()}")
    return rc == 0, time.time() - start


def lathe_logits(artifact, tmp, name):
    """Logits [n, vocab] of the golden prompt, batch 1, one thread."""
    ids_path, mask_path = os.path.join(tmp, "input_ids.npy"), os.path.join(tmp, "attention_mask.npy")
    np.save(ids_path, np.array([ids], dtype=np.int64))
    np.save(mask_path, np.ones((1, len(ids)), dtype=np.int64))
    out = os.path.join(tmp, name)
    start = time.time()
    rc, _, err = run([args.lathe, "run", artifact, "--input", f"input_ids={ids_path}",
                      "--input", f"attention_mask={mask_path}", "--output-dir", out, "--threads", "1"])
    check(rc == 0, f"lathe run {artifact}: rc={rc} {err.strip()}")
    if rc != 0:
        return None, 0.0
    return np.load(os.path.join(out, "logits.npy"))[0], time.time() - start


def top5_error(logits):
    """max |logits - llama.cpp| at the golden top-5 ids, and the position where it is largest."""
    diff = np.abs(logits[positions, golden_ids].astype(np.float64) - golden_logits)
    return float(diff.max()), int(diff.max(axis=1).argmax())


with tempfile.TemporaryDirectory() as tmp:
    artifact = options.artifact
    if artifact:
        compile_s = 0.0
    else:
        artifact = os.path.join(tmp, "smollm2-q4_1.lathe")
        ok, compile_s = compile_model(q4_model, artifact)
        if not ok:
            checker.finish()
    lathe, run_s = lathe_logits(artifact, tmp, "q4_1")
    if lathe is None:
        checker.finish()
    check(lathe.shape == (len(ids), 49152), f"Lathe logits shape {lathe.shape}, expected {(len(ids), 49152)}")

    # i. Lathe against llama.cpp.
    err, where = top5_error(lathe)
    top1 = lathe.argmax(axis=-1)
    agree = int((top1 == golden_ids[:, 0]).sum())
    print(f"i.   Lathe vs llama.cpp ({golden['llama_cpp']['commit'][-40:][:12]}, F32 copy): max |diff| at the "
          f"top-5 ids {err:.3g} (position {where}; tolerance {TOLERANCE}); top-1 equal at {agree}/{len(ids)} positions "
          f"(compile {compile_s:.1f} s, run {run_s:.2f} s)")
    check(err <= TOLERANCE, f"Lathe's logits differ from llama.cpp's top-5 by {err:.3g} at position {where}")
    for p in np.nonzero(top1 != golden_ids[:, 0])[0]:
        check(False, f"position {p}: Lathe's top-1 is {top1[p]} ({lathe[p, top1[p]]:.5f}), llama.cpp's "
                     f"{golden_ids[p, 0]} ({golden_logits[p, 0]:.5f}; Lathe gives it {lathe[p, golden_ids[p, 0]]:.5f})")

    # ii. The numpy reference against Lathe (all logits) and against llama.cpp (top-5).
    start = time.time()
    reference = llama_numpy_ref.forward(q4_model, ids)
    numpy_s = time.time() - start
    diff = np.abs(reference - lathe)
    numpy_err = float(diff.max())
    numpy_top5, numpy_where = top5_error(reference)
    print(f"ii.  numpy reference vs Lathe: max |diff| over all {diff.size} logits {numpy_err:.3g} "
          f"(position {int(diff.max(axis=1).argmax())}); vs llama.cpp top-5 {numpy_top5:.3g} (position {numpy_where}); "
          f"tolerance {TOLERANCE}; numpy forward {numpy_s:.1f} s")
    check(numpy_err <= TOLERANCE, f"numpy reference and Lathe differ by {numpy_err:.3g}")
    check(numpy_top5 <= TOLERANCE, f"numpy reference and llama.cpp's top-5 differ by {numpy_top5:.3g} at position {numpy_where}")

    # iii. The F32 copy gives the same logits as the Q4_1 file.
    if os.path.exists(f32_model):
        f32_artifact = os.path.join(tmp, "smollm2-f32.lathe")
        ok, f32_compile_s = compile_model(f32_model, f32_artifact)
        f32_logits, _ = lathe_logits(f32_artifact, tmp, "f32") if ok else (None, 0.0)
        if f32_logits is not None:
            same = float(np.abs(f32_logits - lathe).max())
            print(f"iii. Lathe on the F32 copy vs the Q4_1 file: max |diff| {same:.3g} "
                  f"(tolerance {SAME_WEIGHTS_TOLERANCE}; compile {f32_compile_s:.1f} s)")
            check(same <= SAME_WEIGHTS_TOLERANCE, f"F32 copy and Q4_1 file give logits {same:.3g} apart")
    else:
        print(f"iii. skipped: {f32_model} is absent (scripts/models/make_llamacpp_refs.py writes it)")

checker.finish()
