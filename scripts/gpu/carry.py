#!/usr/bin/env python3
"""Real-model artifacts and their CPU outputs, carried to the GPU machine.

The GPU machine builds only the runtime (no compiler, no Debian packages), so it
cannot compile a real model. This script, run here with the full build, compiles
a few small real models in formats lathe-synth does not make, runs them on this
machine's CPU, and writes what travels:

    gpu-carry/<name>.lathe                      the artifact
    gpu-carry/<name>/<case>/inputs/*.npy        inputs of one case
    gpu-carry/<name>/<case>/outputs/*.npy       this CPU's outputs for them
    gpu-carry/manifest.json                     the list, the commit, sizes, tolerances

scripts/bench/gpu.sh then runs `lathe-device-check <name>.lathe --reference
gpu-carry/<name>` for each: the device's outputs (and that machine's CPU's)
against these. Carry it: run tool carry ["vendor", "gpu-carry"].

    .venv/bin/python scripts/gpu/carry.py [--out gpu-carry] [--limit-mib 48] [--only NAME,...]

Everything stays under --limit-mib (the device tool moves 64 MiB per call, the
working tree and vendor/ included); a model that does not fit is left out with
a note. Exits non-zero when a compile or a CPU run fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RECIPES = os.path.join(REPO, "examples", "recipes")
MINILM = ("real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")


def generated(name):
    return ("generated", name, f"{name}.opset17.onnx")


# name, model, recipe (None: fp32), int8 embedding table, synthesized cases (batch, seq), rtol.
# The cases of the model's folder (b1_s7, b2_s16, b3_s33: the generator's inputs) come first.
ENTRIES = [
    ("minilm-int4-g32", MINILM, "int4-rtn-g32", True, [(8, 128)], 1e-3),
    ("minilm-nm24-int4", MINILM, "prune-2-4-int4", True, [(8, 128)], 1e-3),
    ("bert-tiny-fp32", generated("bert-tiny"), None, False, [(8, 128)], 1e-3),
    ("bert-tiny-int8", generated("bert-tiny"), "int8-weight-only", False, [], 1e-3),
    ("bert-tiny-fp16", generated("bert-tiny"), "fp16", False, [], 1e-3),
    ("bert-tiny-bf16", generated("bert-tiny"), "bf16", False, [], 1e-3),
    ("bert-tiny-lowrank", generated("bert-tiny"), "lowrank-svd-20", False, [], 1e-3),
    ("llama-tiny-fp32", generated("llama-tiny"), None, False, [(8, 128)], 1e-3),
    ("llama-tiny-int4", generated("llama-tiny"), "int4-rtn-g32", False, [], 1e-3),
    ("llama-tiny-int8-a8", generated("llama-tiny"), "int8-g32-a8", False, [], 1e-3),
    ("bert-tiny-int4-a8", generated("bert-tiny"), "int4-rtn-g32-a8", False, [], 1e-3),
    ("bert-tiny-w8a8", generated("bert-tiny"), "w8a8-dynamic", False, [(8, 128)], 2e-2),
    ("bert-tiny-bitmap", generated("bert-tiny"), "prune-50-magnitude", False, [(8, 128)], 1e-3),
    ("gpt2-lm-tiny-fp32", generated("gpt2-lm-tiny"), None, False, [(4, 64)], 1e-3),
]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p.stdout


def synthesize(inputs_like, batch, seq, seed):
    """Inputs shaped [batch, seq] like the model's carried ones: ids below the smallest id bound
    seen there (or 100), masks of ones with the last row padded, zero token types."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, ref in inputs_like.items():
        if "mask" in name:
            a = np.ones((batch, seq), dtype=ref.dtype)
            if batch > 1:
                a[-1, seq // 2:] = 0
        elif "type" in name:
            a = np.zeros((batch, seq), dtype=ref.dtype)
        else:
            a = rng.integers(1, max(2, min(int(ref.max()) + 1, 100)), size=(batch, seq)).astype(ref.dtype)
        out[name] = a
    return out


def folder_size(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "gpu-carry"))
    ap.add_argument("--limit-mib", type=float, default=48.0)
    ap.add_argument("--lathe", default=os.path.join(REPO, "build", "bin", "lathe"))
    ap.add_argument("--models", default=os.path.join(REPO, "build", "models"), help="scripts/models' folder")
    ap.add_argument("--only", default="", help="comma-separated names (default: all)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    if not os.path.exists(args.lathe):
        sys.exit(f"carry.py: {args.lathe} is missing: build first (scripts/build.sh)")
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    # Built beside the destination, then swapped in: a failed run leaves the old carry as it was.
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".gpu-carry.", dir=parent)
    limit = int(args.limit_mib * 1048576)
    manifest = {"commit": commit, "limit_mib": args.limit_mib, "models": [], "left_out": []}
    failures = 0
    try:
        for name, model, recipe, embed8, synth, rtol in ENTRIES:
            if only and name not in only:
                continue
            model = os.path.join(args.models, *model)
            if not os.path.exists(model):
                manifest["left_out"].append({"name": name, "why": f"{model} is missing (scripts/models)"})
                print(f"-- {name}: left out: {model} is missing")
                continue
            artifact = os.path.join(stage, name + ".lathe")
            cmd = [args.lathe, "compile", model, "-o", artifact]
            recipe_path = None
            if recipe or embed8:
                recipe_path = os.path.join(stage, name + ".yaml")
                text = open(os.path.join(RECIPES, recipe + ".yaml")).read() if recipe else f"name: {name}\n"
                if embed8:
                    text += "\nembeddings:\n  format: int8\n"
                open(recipe_path, "w").write(text)
                cmd += ["--recipe", recipe_path]
            try:
                run(cmd)
                if os.path.exists(artifact + ".report.json"):
                    os.remove(artifact + ".report.json") # the compile report stays here
                cases = {}
                src = os.path.dirname(model)
                for case in sorted(os.listdir(src)):
                    d = os.path.join(src, case, "inputs")
                    if os.path.isdir(d):
                        cases[case] = {f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".npy")}
                if not cases:
                    raise RuntimeError(f"{src} has no <case>/inputs folders")
                first = next(iter(cases.values()))
                for i, (b, s) in enumerate(synth):
                    cases[f"b{b}_s{s}_synth"] = synthesize(first, b, s, 1000 + i)
                for case, inputs in cases.items():
                    cdir = os.path.join(stage, name, case)
                    os.makedirs(os.path.join(cdir, "inputs"))
                    feeds = []
                    for k, a in inputs.items():
                        p = os.path.join(cdir, "inputs", k + ".npy")
                        np.save(p, a)
                        feeds += ["--input", f"{k}={p}"]
                    run([args.lathe, "run", artifact, *feeds, "--output-dir", os.path.join(cdir, "outputs"), "--threads", "2"])
            except RuntimeError as e:
                print(f"-- {name}: FAILED: {e}")
                failures += 1
                continue
            finally:
                if recipe_path and os.path.exists(recipe_path):
                    os.remove(recipe_path)
            size = os.path.getsize(artifact) + folder_size(os.path.join(stage, name))
            used = folder_size(stage)
            if used > limit:
                os.remove(artifact)
                shutil.rmtree(os.path.join(stage, name))
                why = f"{size / 1048576:.1f} MiB would take the carry over {args.limit_mib} MiB"
                manifest["left_out"].append({"name": name, "why": why})
                print(f"-- {name}: left out: {why}")
                continue
            # A causal decoder runs through its KV cache: the device check's --decode applies.
            probe_dir = os.path.join(stage, ".probe")
            os.makedirs(probe_dir)
            probe_feeds = []
            for k, a in synthesize(first, 1, 8, 7).items(): # one row, no padding
                np.save(os.path.join(probe_dir, k + ".npy"), a)
                probe_feeds += ["--input", f"{k}={os.path.join(probe_dir, k + '.npy')}"]
            probe = subprocess.run([args.lathe, "run", artifact, *probe_feeds, "--incremental", "4", "--output-dir", probe_dir],
                                   capture_output=True, text=True)
            shutil.rmtree(probe_dir, ignore_errors=True)
            entry = {"name": name, "artifact": name + ".lathe", "source": os.path.relpath(model, args.models),
                     "recipe": recipe or "fp32", "int8_embeddings": embed8, "cases": sorted(cases),
                     "decoder": probe.returncode == 0, "rtol": rtol, "bytes": size}
            manifest["models"].append(entry)
            print(f"-- {name}: {size / 1048576:.2f} MiB, {len(cases)} cases{', decoder' if entry['decoder'] else ''}")
        manifest["bytes"] = folder_size(stage)
        with open(os.path.join(stage, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        if failures:
            raise SystemExit(f"carry.py: {failures} model(s) failed; {args.out} left as it was")
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.rename(stage, args.out)
        stage = None
        print(f"carry.py: {len(manifest['models'])} models, {manifest['bytes'] / 1048576:.1f} MiB in {args.out} (commit {commit})")
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)


if __name__ == "__main__":
    main()
