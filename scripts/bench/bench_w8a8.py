#!/usr/bin/env python3
"""W8A8 speed (issue #8): Lathe fp32 vs Lathe W8A8 vs onnxruntime fp32 and onnxruntime's dynamic
int8 quantization (onnxruntime.quantization.quantize_dynamic, QInt8 weights) of the same MiniLM
ONNX, same threads and shapes (seq 128, batch 1 and 8, 1 and 2 threads); then SmolLM2-135M prefill
of 512 tokens, Lathe fp32 vs W8A8. Prints the tables and writes JSON stamped with the git commit.
Run with the venv python (it needs onnxruntime):

    .venv/bin/python scripts/bench/bench_w8a8.py
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "accept"))
from bench_minilm import ROOT, lathe_bench, sh  # noqa: E402
from gptq_awq_table import minilm_batch, sentences  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "w8a8.json"))
    args = ap.parse_args()
    work = os.path.join(os.path.dirname(args.out), "w8a8")
    os.makedirs(work, exist_ok=True)
    recipes = os.path.join(ROOT, "examples", "recipes")
    model_dir = os.path.join(args.models, "real", "all-minilm-l6-v2")
    onnx_path = os.path.join(model_dir, "all-minilm-l6-v2.opset17.onnx")
    cald = os.path.join(work, "minilm.cal")
    minilm_batch(os.path.join(model_dir, "tokenizer.json"),
                 sentences(os.path.join(args.models, "corpus", "austen", "emma.txt"), 32), args.seq, cald)
    arts = {"fp32": os.path.join(work, "minilm.fp32.lathe"), "w8a8-smoothquant": os.path.join(work, "minilm.sq.lathe")}
    sh([args.lathe, "compile", onnx_path, "-o", arts["fp32"]])
    sh([args.lathe, "compile", onnx_path, "--recipe", os.path.join(recipes, "w8a8-smoothquant.yaml"), "--calibration", cald,
        "-o", arts["w8a8-smoothquant"]])
    ort_int8 = os.path.join(work, "minilm.ort-int8.onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(onnx_path, ort_int8, weight_type=QuantType.QInt8)
    commit = sh(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()

    def ort(model, batch, threads):
        return json.loads(sh([sys.executable, os.path.join(HERE, "ort_bench.py"), model, "--batch", str(batch), "--seq",
                              str(args.seq), "--threads", str(threads), "--iterations", str(args.iterations)]))["median_ms"]

    rows = []
    print(f"MiniLM-L6, seq {args.seq}, median ms of {args.iterations} runs after warm-up")
    print(f"{'batch':>5} {'thr':>3} {'lathe f32':>10} {'lathe w8a8':>10} {'ort f32':>8} {'ort int8':>8} "
          f"{'f32/w8a8':>9} {'ort-int8/w8a8':>13}")
    for batch in (1, 8):
        for threads in (1, 2):
            f32 = lathe_bench(args.lathe, arts["fp32"], batch, args.seq, threads, args.iterations)["median_ms"]
            w8 = lathe_bench(args.lathe, arts["w8a8-smoothquant"], batch, args.seq, threads, args.iterations)["median_ms"]
            o32, o8 = ort(onnx_path, batch, threads), ort(ort_int8, batch, threads)
            rows.append({"model": "minilm", "batch": batch, "seq": args.seq, "threads": threads, "lathe_fp32_ms": f32,
                         "lathe_w8a8_ms": w8, "ort_fp32_ms": o32, "ort_int8_dynamic_ms": o8,
                         "speedup_vs_lathe_fp32": f32 / w8, "speedup_vs_ort_int8": o8 / w8})
            print(f"{batch:>5} {threads:>3} {f32:>10.2f} {w8:>10.2f} {o32:>8.2f} {o8:>8.2f} {f32 / w8:>9.2f} {o8 / w8:>13.2f}",
                  flush=True)

    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    s32, s8 = os.path.join(work, "smollm2.fp32.lathe"), os.path.join(work, "smollm2.w8a8.lathe")
    sh([args.lathe, "compile", gguf, "-o", s32])
    sh([args.lathe, "compile", gguf, "--recipe", os.path.join(recipes, "w8a8-dynamic.yaml"), "-o", s8])
    print(f"SmolLM2-135M prefill of {args.prefill} tokens (batch 1), median ms")
    for threads in (1, 2):
        f32 = lathe_bench(args.lathe, s32, 1, args.prefill, threads, 5)["median_ms"]
        w8 = lathe_bench(args.lathe, s8, 1, args.prefill, threads, 5)["median_ms"]
        rows.append({"model": "smollm2", "batch": 1, "seq": args.prefill, "threads": threads, "lathe_fp32_ms": f32,
                     "lathe_w8a8_ms": w8, "speedup_vs_lathe_fp32": f32 / w8})
        print(f"  threads {threads}: fp32 {f32:.1f}  w8a8 {w8:.1f}  speedup {f32 / w8:.2f}x", flush=True)
    json.dump({"commit": commit, "rows": rows}, open(args.out, "w"), indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
