#!/usr/bin/env python3
"""Rotary-embedding variants of the GGUF Llama importer, on tiny GGUF files written here with the
gguf package (random f32 weights; 2 blocks, dim 64, 4/2 heads, vocab 96):

a. base, linear scaling (llama.rope.scaling.type = linear, factor 2; also the factor without a type,
   which llama.cpp reads as linear) and per-frequency factors (rope_freqs.weight): `lathe check` names the variant, and the compiled model's logits equal an
   independent numpy forward pass (test/gguf/llama_numpy_ref.py: llama.cpp's adjacent-pair rope on
   the stored rows, angle = pos · base^(-2i/d) / factor / rope_freqs[i]) within TOL, at 2 lengths;
b. the variants change the logits (the scaling is really applied): max |Δ| vs base > 1e-3;
c. linear scaling through the KV cache: `run --incremental 1` equals the full run within 1e-5;
d. llama.rope.scaling.type = yarn is refused by `lathe check` (exit 1) naming 'yarn'.

Runs under the repo venv (gguf, numpy); re-executes itself there. Exit 77 (skip) without the venv,
unless CI=true (then 1).
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import Checker, reexec_with, run, scratch_dir  # noqa: E402

TOL = 1e-4  # fp32 against float64, logits of magnitude ~5 through 2 blocks

ap = argparse.ArgumentParser()
ap.add_argument("--lathe", required=True)
ap.add_argument("--python", required=True)
args = ap.parse_args()
try:
    import gguf
    import numpy as np
except ImportError:
    reexec_with(args.python, "LATHE_ROPE_REEXEC", f"{args.python} lacks gguf/numpy (run scripts/models/prepare.sh)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_numpy_ref  # noqa: E402

VOCAB, DIM, HEADS, KV, FF, BLOCKS = 96, 64, 4, 2, 128, 2


def write_model(path, variant):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(BLOCKS)
    w.add_context_length(256)
    w.add_embedding_length(DIM)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(DIM // HEADS)
    if variant == "linear2":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(2.0)
    if variant == "factor-only":  # no scaling type: llama.cpp reads it as linear
        w.add_rope_scaling_factor(2.0)
    if variant == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)

    def tensor(name, shape, scale=0.2):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    tensor("token_embd.weight", (VOCAB, DIM), 1.0)
    for b in range(BLOCKS):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(DIM)).astype(np.float32))
        tensor(p + "attn_q.weight", (DIM, DIM))
        tensor(p + "attn_k.weight", (DIM * KV // HEADS, DIM))
        tensor(p + "attn_v.weight", (DIM * KV // HEADS, DIM))
        tensor(p + "attn_output.weight", (DIM, DIM))
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(DIM)).astype(np.float32))
        tensor(p + "ffn_gate.weight", (FF, DIM))
        tensor(p + "ffn_up.weight", (FF, DIM))
        tensor(p + "ffn_down.weight", (DIM, FF))
    w.add_tensor("output_norm.weight", np.ones(DIM, dtype=np.float32))
    tensor("output.weight", (VOCAB, DIM))
    if variant == "ropefreqs":  # Llama-3.1 style: high frequencies untouched, low ones slowed up to 8x
        w.add_tensor("rope_freqs.weight", np.geomspace(1.0, 8.0, DIM // HEADS // 2).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    c = Checker()
    tmp = scratch_dir("lathe-rope-")
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, VOCAB, 37), rng.integers(0, VOCAB, 150)]
    logits = {}
    for variant, needle in (("base", "rope base 10000,"), ("linear2", "linear scaling 2"), ("factor-only", "linear scaling 2"),
                            ("ropefreqs", "with rope_freqs")):
        path = os.path.join(tmp, variant + ".gguf")
        write_model(path, variant)
        rc, out, err = run([args.lathe, "check", path])
        c.expect(rc == 0 and needle in out + err, f"{variant}: check rc {rc}: {(out + err).strip()[:300]}")
        art = os.path.join(tmp, variant + ".lathe")
        rc, _, err = run([args.lathe, "compile", path, "-o", art])
        c.expect(rc == 0, f"{variant}: compile: {err.strip()[-300:]}")
        if rc != 0:
            continue
        for i, ids in enumerate(seqs):
            d = tempfile.mkdtemp(dir=tmp)
            np.save(os.path.join(d, "ids.npy"), ids[None, :].astype(np.int64))
            np.save(os.path.join(d, "mask.npy"), np.ones((1, len(ids)), dtype=np.int64))
            feeds = ["--input", f"input_ids={d}/ids.npy", "--input", f"attention_mask={d}/mask.npy"]
            rc, _, err = run([args.lathe, "run", art, "--output-dir", d] + feeds)
            c.expect(rc == 0, f"{variant}: run: {err}")
            if rc != 0:
                continue
            got = np.load(os.path.join(d, "logits.npy"))[0]
            want = llama_numpy_ref.forward(path, ids)
            diff = float(np.abs(got - want).max())
            print(f"{variant:10s} length {len(ids):3d}: max |lathe - numpy| = {diff:.2e}")
            c.expect(diff <= TOL, f"{variant} length {len(ids)}: lathe vs numpy {diff:.2e} > {TOL}")
            logits[(variant, i)] = got
            if variant == "linear2" and i == 1:
                rc, _, err = run([args.lathe, "run", art, "--output-dir", d, "--incremental", "1"] + feeds)
                inc = np.load(os.path.join(d, "logits.npy"))[0] if rc == 0 else None
                inc_diff = float(np.abs(inc - got).max()) if inc is not None else float("inf")
                print(f"linear2    length {len(ids):3d}: incremental vs full max |diff| = {inc_diff:.2e}")
                # The one-token GEMMs sum in another order than the whole sequence's (oneDNN's GEMV), hence 1e-5 relative
                # to the logits' scale; a wrong scaling through the cache moves them by O(1).
                c.expect(inc_diff <= 1e-5 * max(1.0, float(np.abs(got).max())), f"linear2 incremental: {inc_diff:.2e} {err.strip()}")
    for variant in ("linear2", "ropefreqs"):
        if (variant, 1) in logits and ("base", 1) in logits:
            delta = float(np.abs(logits[(variant, 1)] - logits[("base", 1)]).max())
            c.expect(delta > 1e-3, f"{variant} logits equal the unscaled model's (max |Δ| {delta:.1e}): scaling not applied")
    path = os.path.join(tmp, "yarn.gguf")
    write_model(path, "yarn")
    rc, out, err = run([args.lathe, "check", path])
    c.expect(rc == 1 and "yarn" in out + err, f"yarn: check rc {rc}: {(out + err).strip()[:300]}")
    c.finish()


main()
