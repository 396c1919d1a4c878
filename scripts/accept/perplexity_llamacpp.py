#!/usr/bin/env python3
"""Acceptance (#4): SmolLM2-135M perplexity, Lathe fp32 vs llama.cpp on the same F32 GGUF and the
same text, under llama-perplexity's protocol (512-token windows, BOS as the vocabulary asks, second
half of each window scored). Target: |Lathe - llama.cpp| / llama.cpp <= 0.2 %.

Needs llama.cpp built by scripts/models/build_llamacpp.sh and the F32 copy written by
scripts/models/make_llamacpp_refs.py. Text: Pride and Prejudice from Debian's r-cran-janeaustenr
(scripts/models/fetch_corpus.py), the evaluation split. Writes JSON stamped with the git commit.

    .venv/bin/python scripts/accept/perplexity_llamacpp.py [--chunks 100] [--threads 2]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = 0.002


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lathe", default=os.path.join(ROOT, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    ap.add_argument("--llamacpp-bin", default=os.path.join(ROOT, "build", "llamacpp", "bin"))
    ap.add_argument("--chunks", type=int, default=100, help="512-token windows (0: the whole text)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "accept", "perplexity_llamacpp.json"))
    args = ap.parse_args()
    f32 = os.path.join(args.models, "llamacpp", "smollm2-135m-instruct-f32.gguf")
    text = os.path.join(args.models, "corpus", "austen", "prideprejudice.txt")
    perplexity = os.path.join(args.llamacpp_bin, "llama-perplexity")
    for path, how in ((f32, "scripts/models/make_llamacpp_refs.py"), (text, "scripts/models/prepare.sh"),
                      (perplexity, "scripts/models/build_llamacpp.sh")):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing (run {how})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    artifact = os.path.join(os.path.dirname(args.out), "smollm2-f32.lathe")
    sh([args.lathe, "compile", f32, "-o", artifact])

    lathe_json = os.path.join(os.path.dirname(args.out), "lathe_eval.json")
    cmd = [args.lathe, "eval", artifact, "--text", text, "--protocol", "llama.cpp", "--ctx", "512",
           "--threads", str(args.threads), "--json", lathe_json]
    if args.chunks:
        cmd += ["--chunks", str(args.chunks)]
    t0 = time.time()
    sh(cmd)
    lathe_wall = time.time() - t0
    lathe = json.load(open(lathe_json))

    cmd = [perplexity, "-m", f32, "-f", text, "-c", "512", "-t", str(args.threads), "-tb", str(args.threads)]
    if args.chunks:
        cmd += ["--chunks", str(args.chunks)]
    t0 = time.time()
    p = sh(cmd)
    llama_wall = time.time() - t0
    log = p.stdout + p.stderr
    m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", log)
    if not m:
        sys.exit("no 'Final estimate' in llama-perplexity's output:\n" + log[-3000:])
    llama_ppl, llama_err = float(m.group(1)), float(m.group(2))
    chunks = re.search(r"calculating perplexity over (\d+) chunks", log)
    tokens = re.search(r"tokenization took .*\n.*?(\d+) tokens", log)
    rel = abs(lathe["ppl"] - llama_ppl) / llama_ppl
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "text": "Pride and Prejudice (Debian r-cran-janeaustenr 1.0.0-1)",
              "model": os.path.basename(f32), "protocol": "llama.cpp (ctx 512, second half scored)",
              "threads": args.threads, "chunks_lathe": lathe["chunks"],
              "chunks_llamacpp": int(chunks.group(1)) if chunks else None,
              "stream_tokens_lathe": lathe["stream_tokens"],
              "lathe": {"ppl": lathe["ppl"], "ppl_error": lathe["ppl_error"], "seconds": lathe_wall,
                        "tokens_per_second": lathe["tokens_per_second"]},
              "llamacpp": {"ppl": llama_ppl, "ppl_error": llama_err, "seconds": llama_wall},
              "relative_difference": rel, "target": TARGET, "pass": rel <= TARGET}
    json.dump(result, open(args.out, "w"), indent=2)
    print(f"{'':12s} {'PPL':>10s} {'+/-':>8s} {'wall s':>8s}")
    print(f"{'lathe fp32':12s} {lathe['ppl']:10.4f} {lathe['ppl_error']:8.4f} {lathe_wall:8.1f}")
    print(f"{'llama.cpp':12s} {llama_ppl:10.4f} {llama_err:8.4f} {llama_wall:8.1f}")
    print(f"windows: lathe {lathe['chunks']}, llama.cpp {result['chunks_llamacpp']}; "
          f"relative difference {100 * rel:.4f} % (target <= {100 * TARGET:.1f} %): {'PASS' if result['pass'] else 'FAIL'}")
    print(f"wrote {args.out}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
