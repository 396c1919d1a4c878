#!/usr/bin/env python3
"""Lathe fp32 vs onnxruntime on the real MiniLM (same ONNX, threads, shapes),
seq 128 at batch 1 and 8, 1 and 2 threads. Prints a table of median latencies
and the ratio lathe/onnxruntime (target <= 0.9) and writes JSON stamped with
the git commit. Run with the venv python (it needs onnxruntime):

    .venv/bin/python scripts/bench/bench_minilm.py [--lathe build/bin/lathe]
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def lathe_bench(lathe, artifact, batch, seq, threads, iterations):
    out = sh([lathe, "bench", artifact, "--batch", str(batch), "--seq", str(seq), "--threads", str(threads),
              "--iterations", str(iterations)])
    m = re.search(r"median ([\d.]+) ms, p90 ([\d.]+) ms", out)
    act = re.search(r"activations\s+(.*) planned", out)
    rss = re.search(r"peak RSS\s+(.*)", out)
    return {"median_ms": float(m.group(1)), "p90_ms": float(m.group(2)),
            "activations": act.group(1) if act else None, "peak_rss": rss.group(1).strip() if rss else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "minilm.json"))
    args = ap.parse_args()
    onnx_path = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    artifact = os.path.join(os.path.dirname(args.out), "minilm.lathe")
    sh([args.lathe, "compile", onnx_path, "-o", artifact])
    commit = sh(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    rows = []
    print(f"MiniLM-L6 fp32, seq {args.seq}, median of {args.iterations} runs after warm-up")
    print(f"{'batch':>5} {'threads':>7} {'lathe ms':>10} {'ort ms':>10} {'lathe/ort':>10}")
    for batch in (1, 8):
        for threads in (1, 2):
            lat = lathe_bench(args.lathe, artifact, batch, args.seq, threads, args.iterations)
            ort = json.loads(sh([sys.executable, os.path.join(ROOT, "scripts", "bench", "ort_bench.py"), onnx_path,
                                 "--batch", str(batch), "--seq", str(args.seq), "--threads", str(threads),
                                 "--iterations", str(args.iterations)]))
            ratio = lat["median_ms"] / ort["median_ms"]
            rows.append({"batch": batch, "seq": args.seq, "threads": threads, "lathe": lat, "onnxruntime": ort,
                         "ratio": ratio})
            print(f"{batch:>5} {threads:>7} {lat['median_ms']:>10.2f} {ort['median_ms']:>10.2f} {ratio:>10.2f}")
    json.dump({"commit": commit, "model": os.path.basename(onnx_path), "rows": rows}, open(args.out, "w"), indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
