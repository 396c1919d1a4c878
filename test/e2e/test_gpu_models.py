"""CUDA against the CPU: real models (#3's encoders, #5's SmolLM2 decoding) in
every weight format, compared output by output with lathe-device-check (max
|cuda - cpu| <= rtol * max|cpu|, rtol 1e-3 for fp32 paths). Without a GPU it
exits 77 with a SKIP(no-gpu) line, which scripts/test.sh accepts under CI=true
only for gpu_* tests.

With --emulator PLUGIN (liblathe-cuda-emu.so, runtime/cuda/emu) the same cases
run on the CUDA emulator: the plugin's own kernels on the host, one block at a
time, checked for barrier divergence, shuffles of absent lanes, accesses past an
allocation and misaligned vector loads. Timings mean nothing there, so the
speed check and lathe-cuda-bench are left out, each shape runs once and the
largest shapes are dropped.

Formats that round activations (w8a8, int8 activations) are also judged against
the fp32 model (lathe-device-check --baseline): a 1-ulp difference before a
rounding flips a code, so the CPU's own ISA levels differ from each other by up
to 8 % of max|ref| on MiniLM w8a8 (measured); the device passes when it is
within rtol of the CPU or loses no more accuracy against fp32 than the CPU."""
import argparse
import glob
import json
import os
import sys
import tempfile

from lathe_test_util import Checker, models_or_skip, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(REPO, "examples", "recipes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--check", required=True, help="lathe-device-check")
    ap.add_argument("--cuda-bench", required=True, help="lathe-cuda-bench")
    ap.add_argument("--emulator", help="run on the CUDA emulator (liblathe-cuda-emu.so) instead of a GPU")
    args = ap.parse_args()
    if args.emulator:
        if not os.path.exists(args.emulator):
            print(f"FAIL: the CUDA emulator {args.emulator} was not built")
            sys.exit(1)
        os.environ["LATHE_CUDA_PLUGIN"] = os.path.abspath(args.emulator)
    models_or_skip(args.models)
    c = Checker()
    tiny = glob.glob(os.path.join(args.models, "generated", "bert-tiny", "*.opset17.onnx"))[0]
    minilm = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
    smol = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.lathe")
        rc, _, err = run([args.lathe, "compile", tiny, "-o", probe])
        if rc != 0:
            print(f"FAIL: compile {tiny}: {err}")
            sys.exit(1)
        rc, out, err = run([args.check, probe, "--shapes", "1x4", "--reps", "1"])
        if rc == 77:
            print(out.strip())
            sys.exit(77)
        c.expect(rc == 0, f"bert-tiny on cuda: {out[-2000:]} {err}")
        # A bad token id is an error on the device too, naming the node (not rows of zeros).
        import numpy as np
        ids_dir = os.path.join(tmp, "bad")
        os.makedirs(ids_dir)
        feeds = []
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            a = np.ones((1, 4), dtype=np.int64) if name == "attention_mask" else np.zeros((1, 4), dtype=np.int64)
            if name == "input_ids":
                a[0, 2] = 10 ** 9
            np.save(os.path.join(ids_dir, name + ".npy"), a)
            feeds += ["--input", f"{name}={os.path.join(ids_dir, name + '.npy')}"]
        rc, _, err = run([args.lathe, "run", probe, *feeds, "--output-dir", os.path.join(tmp, "o"), "--device", "cuda"])
        c.expect(rc == 1 and "outside the table" in err, f"bad id on cuda: rc={rc} {err}")
        # (name, model, recipe, check arguments, rtol); "@name" in the arguments: that case's artifact.
        cases = [
            ("minilm-fp32", minilm, None, ["--shapes", "1x7,2x16,3x33,8x128"], 1e-3),
            ("minilm-int8", minilm, "int8-weight-only.yaml", ["--shapes", "1x7,2x16,3x33"], 1e-3),
            ("minilm-int4", minilm, "int4-rtn-g32.yaml", ["--shapes", "1x7,2x16,3x33"], 1e-3),
            ("minilm-fp16", minilm, "fp16.yaml", ["--shapes", "1x7,2x16,3x33"], 1e-3),
            ("minilm-w8a8", minilm, "w8a8-dynamic.yaml", ["--shapes", "1x7,2x16", "--baseline", "@minilm-fp32"], 2e-2),
            ("minilm-2:4", minilm, "prune-2-4-magnitude.yaml", ["--shapes", "1x7,2x16"], 1e-3),
            ("minilm-bitmap", minilm, "prune-50-magnitude.yaml", ["--shapes", "1x7,2x16,8x128"], 1e-3),
            ("minilm-lowrank", minilm, "lowrank-svd-20.yaml", ["--shapes", "1x7,2x16"], 1e-3),
            ("smollm2-fp32", smol, None, ["--shapes", "1x5,2x17", "--decode", "16", "--prompt", "8"], 1e-3),
            ("smollm2-int4", smol, "int4-rtn-g128.yaml", ["--shapes", "1x5", "--decode", "16", "--prompt", "8"], 1e-3),
            ("smollm2-bf16", smol, "bf16.yaml", ["--shapes", "1x5", "--decode", "8", "--prompt", "8"], 1e-3),
            # int8 activations (act_block 32): the rows quantized by the CPU's rule on the device.
            ("smollm2-int4-a8", smol, "int4-rtn-g32-a8.yaml",
             ["--shapes", "1x5,2x17", "--decode", "16", "--prompt", "8", "--baseline", "@smollm2-fp32"], 1e-3),
            ("minilm-int8-a8", minilm, "int8-g32-a8.yaml", ["--shapes", "1x7,2x16,3x33", "--baseline", "@minilm-fp32"], 1e-3),
            # Tensor cores (LATHE_CUDA_GEMM=tensor): prefill rows > 8 with activations rounded to
            # bf16/half or TF32 (10-bit mantissas), so a looser bound; decoding keeps the GEMV.
            # bf16 keeps 8 mantissa bits: over SmolLM2's 30 layers the logits move by up to 8.6 % of
            # max|logit| (cosine 0.9995) against fp32 activations (measured on the CUDA emulator).
            ("smollm2-bf16-tensor", smol, "bf16.yaml", ["--shapes", "1x5,2x17,1x64"], 0.12),
            ("minilm-fp16-tensor", minilm, "fp16.yaml", ["--shapes", "2x16,8x128"], 3e-2),
            ("minilm-fp32-tf32", minilm, None, ["--shapes", "2x16,8x128"], 3e-2),
        ]
        for name, model, recipe, extra, rtol in cases:
            os.environ["LATHE_CUDA_GEMM"] = "tensor" if name.endswith(("-tensor", "-tf32")) else "exact"
            art = os.path.join(tmp, name + ".lathe")
            cmd = [args.lathe, "compile", model, "-o", art]
            if recipe:
                cmd += ["--recipe", os.path.join(RECIPES, recipe)]
            rc, _, err = run(cmd, timeout=900)
            c.expect(rc == 0, f"{name}: compile: {err[-1000:]}")
            if rc != 0:
                continue
            report = os.path.join(tmp, name + ".json")
            extra = [os.path.join(tmp, a[1:] + ".lathe") if a.startswith("@") else a for a in extra]
            if args.emulator:
                # One run a shape, not the largest shapes (minutes each when emulated), and
                # decoding from a 30-token prompt for 4 steps: the cache crosses the attention
                # kernel's 32-key tile (as the 33-token prefill shapes do).
                extra = [",".join(x for x in a.split(",") if x not in ("8x128", "1x64")) if a[:1].isdigit() and "x" in a else a
                         for a in extra] + ["--reps", "1"]
                for flag, value in (("--prompt", "30"), ("--decode", "4")):
                    if flag in extra:
                        extra[extra.index(flag) + 1] = value
            rc, out, err = run([args.check, art, *extra, "--rtol", str(rtol), "--json", report], timeout=900)
            print(f"== {name}\n{out.strip()}")
            c.expect(rc == 0, f"{name}: cuda differs from cpu or failed: {err[-1000:]}")
            if os.path.exists(report) and not args.emulator:
                r = json.load(open(report))
                slower = [x for x in r["runs"] if x["device_ms"] > x["cpu_ms"]]
                c.expect(not slower, f"{name}: cuda slower than the CPU at {[(x['shape'], x['device_ms'], x['cpu_ms']) for x in slower]}")
        if args.emulator:
            c.finish()
        # The dequantize-fused GEMV at 7B layer shapes: every format's output against the
        # host reference of its decoding (the bench's own check); bandwidth is reported, not gated.
        rc, out, err = run([args.cuda_bench, "--iterations", "20", "--json", os.path.join(tmp, "gemv.json")], timeout=600)
        print(f"== lathe-cuda-bench\n{out.strip()}")
        c.expect(rc == 0 and "PASS" in out, f"lathe-cuda-bench: rc={rc} {err[-1000:]}")
    c.finish()


if __name__ == "__main__":
    main()
