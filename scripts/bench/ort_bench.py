#!/usr/bin/env python3
"""Times onnxruntime on an ONNX model with synthesized inputs (the peer for
`lathe bench`): same shapes, same thread count, warm-up excluded. Prints one
JSON line: {"median_ms", "p90_ms", "iterations", ...}."""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(0)
    for i in sess.get_inputs():
        if "mask" in i.name:
            feeds[i.name] = np.ones((args.batch, args.seq), dtype=np.int64)
        elif "type" in i.name:
            feeds[i.name] = np.zeros((args.batch, args.seq), dtype=np.int64)
        else:
            feeds[i.name] = rng.integers(0, 100, size=(args.batch, args.seq), dtype=np.int64)
    for _ in range(args.warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"peer": f"onnxruntime {ort.__version__}", "batch": args.batch, "seq": args.seq,
                      "threads": args.threads, "median_ms": statistics.median(times),
                      "p90_ms": times[int(0.9 * (len(times) - 1))], "iterations": args.iterations}))


if __name__ == "__main__":
    main()
