#!/usr/bin/env python3
"""Decode speed of SmolLM2-135M per weight format, against llama.cpp on the same machine.

Each round runs every Lathe artifact (`lathe generate`, 16-token prompt, 128 new tokens) and
llama.cpp's F32, Q8_0 and Q4_0 files (`llama-bench -p 0 -n 128`) once, in turn, so slow phases of a
shared machine hit every row alike; the table is the median over the rounds, at 1 and 2 threads,
with each format's ratio to Lathe fp32 and to llama.cpp's format of the same bit width
(int8 ↔ Q8_0, int4 ↔ Q4_0, fp32 ↔ F32).

Artifacts: build/accept/smollm2.<preset>.lathe from scripts/accept/quantize_table.py, compiled
here from the presets when missing. llama.cpp: scripts/models/build_llamacpp.sh and
scripts/models/make_llamacpp_refs.py (the F32 GGUF), quantized here with llama-quantize.
Writes build/bench/decode_formats.json stamped with the git commit.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from measure import ROOT, commit, lathe_generate, sh  # noqa: E402

PEER = {"fp32": "F32", "int8-weight-only": "Q8_0", "int8-g32": "Q8_0", "int4-rtn-g32": "Q4_0",
        "int4-rtn-g128": "Q4_0", "int4-g32-int8-head": "Q4_0", "gguf-native": "Q4_1",
        "int8-g32-a8": "Q8_0", "int4-rtn-g32-a8": "Q4_0", "gguf-native-a8": "Q4_1"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--llamacpp-bin", default=os.path.join(ROOT, "build", "llamacpp", "bin"))
    ap.add_argument("--presets", default="fp32,fp16,int8-weight-only,int8-g32,int8-g32-a8,int4-rtn-g32,int4-rtn-g32-a8,"
                                         "int4-rtn-g128,gguf-native,gguf-native-a8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "decode_formats.json"))
    args = ap.parse_args()

    gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
    work = os.path.join(ROOT, "build", "accept")
    os.makedirs(work, exist_ok=True)
    arts = {}
    for preset in args.presets.split(","):
        art = os.path.join(work, f"smollm2.{preset}.lathe")
        if not os.path.exists(art):
            if preset == "fp32":
                sh([args.lathe, "compile", gguf, "-o", art])
            elif preset in ("gguf-native", "gguf-native-a8"):  # the file's own Q4_1 blocks as int4 g32 asymmetric
                sh([args.lathe, "compile", gguf, "--gguf-weights", preset[5:], "-o", art])
            else:
                recipe = os.path.join(ROOT, "examples", "recipes", f"{preset}.yaml")
                if not os.path.exists(recipe):
                    sys.exit(f"unknown preset '{preset}': no {recipe}")
                sh([args.lathe, "compile", gguf, "--recipe", recipe, "-o", art])
        arts[preset] = art

    llama = {}
    f32gguf = os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
    quantize, bench = os.path.join(args.llamacpp_bin, "llama-quantize"), os.path.join(args.llamacpp_bin, "llama-bench")
    if os.path.exists(f32gguf) and os.path.exists(bench):
        llama["F32"] = f32gguf
        for qtype in ("Q8_0", "Q4_0", "Q4_1"):
            out = os.path.join(work, f"smollm2-{qtype.lower()}.gguf")
            if not os.path.exists(out):
                sh([quantize, "--allow-requantize", f32gguf, out, qtype])
            llama[qtype] = out
    else:
        print("note: llama.cpp or the F32 GGUF is missing (scripts/models/build_llamacpp.sh, make_llamacpp_refs.py): "
              "no llama.cpp column", file=sys.stderr)

    threads = [int(t) for t in args.threads.split(",")]
    samples = {(name, t): [] for t in threads for name in list(arts) + [f"llama.cpp {q}" for q in llama]}
    for r in range(args.rounds):
        for t in threads:
            for preset, art in arts.items():
                samples[(preset, t)].append(lathe_generate(args.lathe, art, 16, args.tokens, t)[1])
            for q, path in llama.items():
                res = json.loads(sh([bench, "-m", path, "-p", "0", "-n", str(args.tokens), "-t", str(t), "-r", "1",
                                     "-o", "json"]).stdout)
                samples[(f"llama.cpp {q}", t)].append(res[0]["avg_ts"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = []
    print(f"SmolLM2-135M decode, {args.tokens} tokens after a 16-token prompt; median tokens/s of {args.rounds} "
          f"interleaved rounds")
    print(f"{'format':22s} {'thr':>3s} {'tok/s':>8s} {'vs fp32':>8s} {'llama.cpp peer':>15s} {'peer tok/s':>10s} {'vs peer':>8s}")
    for t in threads:
        for preset in arts:
            peer = PEER.get(preset)
            peer_tps = med.get((f"llama.cpp {peer}", t)) if peer else None
            row = {"format": preset, "threads": t, "tokens_per_s": med[(preset, t)],
                   "vs_fp32": med[(preset, t)] / med[("fp32", t)] if ("fp32", t) in med else None,
                   "peer": peer if peer_tps else None, "peer_tokens_per_s": peer_tps,
                   "vs_peer": med[(preset, t)] / peer_tps if peer_tps else None}
            rows.append(row)
            print(f"{preset:22s} {t:3d} {row['tokens_per_s']:8.1f} "
                  f"{(row['vs_fp32'] or float('nan')):7.2f}x {(peer or '-'):>15s} "
                  f"{(peer_tps or float('nan')):10.1f} {(row['vs_peer'] or float('nan')):7.2f}x")
        for q in llama:
            print(f"{'llama.cpp ' + q:22s} {t:3d} {med[(f'llama.cpp {q}', t)]:8.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    json.dump({"commit": commit(), "rounds": args.rounds, "tokens": args.tokens, "rows": rows,
               "llamacpp": {f"{q} t{t}": med[(f"llama.cpp {q}", t)] for q in llama for t in threads},
               "samples": {f"{k[0]} t{k[1]}": v for k, v in samples.items()}}, open(args.out, "w"), indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
