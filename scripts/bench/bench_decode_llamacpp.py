#!/usr/bin/env python3
"""SmolLM2-135M fp32: prefill of a 512-token prompt and batch-1 decode, Lathe vs llama.cpp's
llama-bench on the same F32 GGUF, same threads (1 and 2), same run. Prints tokens/s, the ratio
lathe/llama.cpp (> 1: Lathe faster) and, for decode, the fraction of the memory bandwidth the
step reaches: (weight bytes + KV-cache bytes read per token) / time per token / bandwidth, with the
bandwidth both as the issue states it (--bandwidth, 19 GB/s) and as lathe-membw measures it here
with the same thread count.
Writes JSON stamped with the git commit.

Needs scripts/models/build_llamacpp.sh and scripts/models/make_llamacpp_refs.py first.

    .venv/bin/python scripts/bench/bench_decode_llamacpp.py [--lathe build/bin/lathe]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from measure import ROOT, commit, lathe_generate, sh  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--llamacpp-bin", default=os.path.join(ROOT, "build", "llamacpp", "bin"))
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bandwidth", type=float, default=19e9, help="machine memory bandwidth, bytes/s")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "decode_llamacpp.json"))
    args = ap.parse_args()
    f32 = os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
    bench = os.path.join(args.llamacpp_bin, "llama-bench")
    for path in (f32, bench):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing (run scripts/models/build_llamacpp.sh and make_llamacpp_refs.py)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    artifact = os.path.join(os.path.dirname(args.out), "smollm2-f32.lathe")
    sh([args.lathe, "compile", f32, "-o", artifact])
    inspect = sh([args.lathe, "inspect", artifact]).stdout
    weights = re.search(r"weights ([\d.]+) (MiB|GiB)", inspect)
    weight_bytes = float(weights.group(1)) * (2**20 if weights.group(2) == "MiB" else 2**30)
    # KV cache read per decoded token at the mean position: layers x 2 x kv_heads x head_dim x 4 bytes x pos.
    layers, kv_heads, head_dim = 30, 3, 64
    mean_pos = 16 + args.decode / 2  # the decode runs start from a 16-token prompt
    kv_bytes = layers * 2 * kv_heads * head_dim * 4 * mean_pos
    rows = []
    print(f"SmolLM2-135M F32, prefill {args.prompt} tokens, decode {args.decode} tokens; median of {args.repeats}")
    print(f"{'threads':>7} {'':8s} {'lathe t/s':>10} {'llama t/s':>10} {'ratio':>7} {'bandwidth':>10}")
    for threads in (1, 2):
        pre = [lathe_generate(args.lathe, artifact, args.prompt, 1, threads)[0] for _ in range(args.repeats)]
        dec = [lathe_generate(args.lathe, artifact, 16, args.decode, threads)[1] for _ in range(args.repeats)]
        lathe_pre, lathe_dec = statistics.median(pre), statistics.median(dec)
        p = sh([bench, "-m", f32, "-p", str(args.prompt), "-n", str(args.decode), "-t", str(threads),
                "-r", str(args.repeats), "-o", "json"])
        results = json.loads(p.stdout)
        llama_pre = next(r["avg_ts"] for r in results if r["n_prompt"] == args.prompt and r["n_gen"] == 0)
        llama_dec = next(r["avg_ts"] for r in results if r["n_gen"] == args.decode and r["n_prompt"] == 0)
        frac = (weight_bytes + kv_bytes) * lathe_dec / args.bandwidth
        frac_llama = (weight_bytes + kv_bytes) * llama_dec / args.bandwidth
        membw = os.path.join(os.path.dirname(args.lathe), "lathe-membw")
        measured = None
        if os.path.exists(membw):
            measured = float(re.search(r"([\d.]+) GB/s", sh([membw, str(threads)]).stdout).group(1)) * 1e9
        rows.append({"threads": threads, "prefill": {"lathe": lathe_pre, "llamacpp": llama_pre, "ratio": lathe_pre / llama_pre},
                     "decode": {"lathe": lathe_dec, "llamacpp": llama_dec, "ratio": lathe_dec / llama_dec,
                                "bandwidth_fraction_lathe": frac, "bandwidth_fraction_llamacpp": frac_llama,
                                "measured_bandwidth": measured,
                                "measured_fraction_lathe": (weight_bytes + kv_bytes) * lathe_dec / measured if measured else None,
                                "measured_fraction_llamacpp": (weight_bytes + kv_bytes) * llama_dec / measured if measured else None}})
        print(f"{threads:>7} {'prefill':8s} {lathe_pre:>10.1f} {llama_pre:>10.1f} {lathe_pre / llama_pre:>7.2f}")
        print(f"{threads:>7} {'decode':8s} {lathe_dec:>10.1f} {llama_dec:>10.1f} {lathe_dec / llama_dec:>7.2f} "
              f"{100 * frac:>9.0f}%  (llama.cpp {100 * frac_llama:.0f}%) of {args.bandwidth / 1e9:.0f} GB/s")
        if measured:
            print(f"{'':7s} {'':8s} {'':10s} {'':10s} {'':7s} {100 * rows[-1]['decode']['measured_fraction_lathe']:>9.0f}%  "
                  f"(llama.cpp {100 * rows[-1]['decode']['measured_fraction_llamacpp']:.0f}%) of {measured / 1e9:.1f} GB/s measured")
    json.dump({"commit": commit(), "model": os.path.basename(f32), "prompt": args.prompt, "decode": args.decode,
               "weight_bytes": weight_bytes, "kv_bytes_per_token_mean": kv_bytes, "bandwidth": args.bandwidth,
               "rows": rows}, open(args.out, "w"), indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
