#!/usr/bin/env python3
"""An independent numpy forward pass of a Llama-family GGUF, written from the architecture's
definition, for checking Lathe's GGUF importer (issue #4). It shares no code with Lathe: the
weights come from the `gguf` package (GGUFReader + gguf.quants.dequantize) and all arithmetic is
float64 numpy; the logits are returned as float32.

For tokens x_0..x_{n-1} (no BOS is added; the ids are used as given):

    h = token_embd[ids]
    for every block b:
        a = rms_norm(h) * attn_norm            rms_norm(v) = v / sqrt(mean(v^2) + eps)
        q, k, v = a @ attn_q^T, a @ attn_k^T, a @ attn_v^T     (heads of head_dim = n_embd / n_head)
        q, k = rope(q), rope(k)
        h = h + attn_output(softmax(q k^T / sqrt(head_dim) + causal mask) v)
        m = rms_norm(h) * ffn_norm
        h = h + ffn_down(silu(ffn_gate(m)) * ffn_up(m))
    logits = (rms_norm(h) * output_norm) @ output^T       output = token_embd when output.weight is absent

Rotary embeddings, and the Q/K layout: HF Llama rotates the pairs (i, i + d/2) of each head
("NEOX" style, rotate_half). llama.cpp's converter permutes the rows of attn_q and attn_k so that
those pairs become adjacent, (2i, 2i+1), and llama.cpp applies its NORMAL rope (LLAMA_ROPE_TYPE_NORM)
to the weights as stored. This file does the same: no un-permuting, rope on adjacent pairs,

    (q[2i], q[2i+1]) <- (q[2i] cos t - q[2i+1] sin t,  q[2i] sin t + q[2i+1] cos t),
    t = position * freq_base^(-2i / n_rot),  i < n_rot / 2,

leaving dimensions n_rot..head_dim as they are. (Lathe's importer goes the other way: it
un-permutes the rows and uses NEOX rope, so this is an independent route to the same numbers.)
Grouped-query attention: query head h reads key/value head h // (n_head / n_head_kv), as ggml's
broadcast does. Rope scaling, as llama.cpp applies it:

    t = position * freq_base^(-2i / n_rot) / factor / rope_freqs[i]

factor = llama.rope.scaling.factor (or the older llama.rope.scale_linear) when
llama.rope.scaling.type is "linear" (llama.cpp's freq_scale = 1 / factor; an absent type counts as
"linear", as in llama.cpp, and an absent or zero factor as 1), 1 when the type is "none" (or empty); rope_freqs[i] from the optional F32 tensor
rope_freqs.weight [n_rot / 2] (Llama-3.1 style per-frequency factors, ggml's freq_factors), else 1.
Other scaling types ("yarn", "longrope", ...) are refused with an error naming them.

    python3 test/gguf/llama_numpy_ref.py MODEL.gguf --ids 1,2,3 [-o logits.npy] [--top 5]
"""
import argparse
import sys
import time

import numpy as np
import gguf
from gguf.quants import dequantize


def _metadata(reader):
    values = {}
    for key, field in reader.fields.items():
        try:
            values[key] = field.contents()
        except Exception:  # noqa: BLE001 (fields this model does not need)
            pass
    return values


class Weights:
    """Tensors by name, dequantized to float64 in numpy's row-major [rows, columns] order
    (a GGUF shape [ne0, ne1] is numpy [ne1, ne0]: a projection is [out_features, in_features])."""

    def __init__(self, reader):
        self.tensors = {t.name: t for t in reader.tensors}

    def has(self, name):
        return name in self.tensors

    def get(self, name):
        if name not in self.tensors:
            raise KeyError(f"tensor '{name}' is missing from the GGUF")
        t = self.tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape))
        values = dequantize(t.data, t.tensor_type) if t.tensor_type not in (
            gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F64) else np.asarray(t.data)
        return np.asarray(values, dtype=np.float64).reshape(shape)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_adjacent_pairs(x, positions, n_rot, freq_base, freq_scale=1.0, freq_factors=None):
    """NORMAL (adjacent-pair) rotary embedding on x [n, heads, head_dim], as llama.cpp's
    ggml_rope with mode 0 applies it: angle = position · freq_scale · base^(-2i/n_rot) / factor_i
    (freq_scale = 1 / llama.rope.scaling.factor for linear scaling; factors from rope_freqs.weight)."""
    half = n_rot // 2
    inv_freq = freq_base ** (-2.0 * np.arange(half, dtype=np.float64) / n_rot) * freq_scale
    if freq_factors is not None:
        inv_freq = inv_freq / np.asarray(freq_factors, dtype=np.float64)
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]  # [n, half]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    out = x.copy()
    even, odd = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = even * cos - odd * sin
    out[..., 1:n_rot:2] = even * sin + odd * cos
    return out


def forward(gguf_path, ids):
    """Logits [len(ids), n_vocab] float32 for the token ids `ids`, positions 0..n-1, causal."""
    reader = gguf.GGUFReader(gguf_path)
    meta = _metadata(reader)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{gguf_path}: general.architecture is {arch!r}; only 'llama' is implemented")

    def key(name, default=None):
        full = f"{arch}.{name}"
        if full not in meta:
            if default is None:
                raise KeyError(f"{gguf_path}: metadata '{full}' is missing")
            return default
        return meta[full]

    n_blocks = int(key("block_count"))
    n_embd = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    n_head_kv = int(key("attention.head_count_kv", n_head))
    eps = float(key("attention.layer_norm_rms_epsilon"))
    head_dim = n_embd // n_head
    n_rot = int(key("rope.dimension_count", head_dim))
    freq_base = float(key("rope.freq_base", 10000.0))
    # As llama.cpp reads them: an absent scaling type means "linear", and the factor then applies
    # when present (freq_scale = 1 / factor; a factor of 0 or none at all means 1); type "none"
    # never scales.
    scaling = key("rope.scaling.type", "linear")
    freq_scale = 1.0
    if scaling == "linear":
        factor = float(key("rope.scaling.factor", key("rope.scale_linear", 0.0)))  # the older key as fallback
        if factor < 0:
            raise ValueError(f"{gguf_path}: llama.rope.scaling.factor = {factor} is negative")
        freq_scale = 1.0 / factor if factor != 0.0 else 1.0
    elif scaling not in ("none", ""):
        raise ValueError(f"{gguf_path}: rope scaling {scaling!r} is not implemented")
    group = n_head // n_head_kv

    w = Weights(reader)
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    positions = np.arange(n)
    freq_factors = w.get("rope_freqs.weight").reshape(-1) if w.has("rope_freqs.weight") else None
    if freq_factors is not None and freq_factors.shape != (n_rot // 2,):
        raise ValueError(f"{gguf_path}: rope_freqs.weight has {freq_factors.size} entries, expected n_rot / 2 = {n_rot // 2}")
    token_embd = w.get("token_embd.weight")  # [vocab, n_embd]
    h = token_embd[ids]
    causal = np.triu(np.full((n, n), -np.inf), k=1)

    for b in range(n_blocks):
        p = f"blk.{b}."
        a = rms_norm(h, w.get(p + "attn_norm.weight"), eps)
        q = (a @ w.get(p + "attn_q.weight").T).reshape(n, n_head, head_dim)
        k = (a @ w.get(p + "attn_k.weight").T).reshape(n, n_head_kv, head_dim)
        v = (a @ w.get(p + "attn_v.weight").T).reshape(n, n_head_kv, head_dim)
        q = rope_adjacent_pairs(q, positions, n_rot, freq_base, freq_scale, freq_factors)
        k = rope_adjacent_pairs(k, positions, n_rot, freq_base, freq_scale, freq_factors)
        k = np.repeat(k, group, axis=1)  # query head hq uses kv head hq // group
        v = np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + causal
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        attended = np.einsum("hqk,khd->qhd", probs, v).reshape(n, n_head * head_dim)
        h = h + attended @ w.get(p + "attn_output.weight").T

        m = rms_norm(h, w.get(p + "ffn_norm.weight"), eps)
        gate = m @ w.get(p + "ffn_gate.weight").T
        up = m @ w.get(p + "ffn_up.weight").T
        h = h + (gate / (1.0 + np.exp(-gate)) * up) @ w.get(p + "ffn_down.weight").T

    out = rms_norm(h, w.get("output_norm.weight"), eps)
    output = w.get("output.weight") if w.has("output.weight") else token_embd
    return (out @ output.T).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a llama-architecture GGUF")
    ap.add_argument("--ids", required=True, help="comma-separated token ids (no BOS is added)")
    ap.add_argument("-o", "--output", help="write the logits [n, vocab] float32 here (.npy)")
    ap.add_argument("--top", type=int, default=5, help="print the top-k ids of the last position")
    args = ap.parse_args()
    ids = [int(x) for x in args.ids.replace(" ", "").split(",") if x]
    start = time.time()
    logits = forward(args.model, ids)
    print(f"{len(ids)} tokens -> logits {logits.shape} in {time.time() - start:.1f} s", file=sys.stderr)
    if args.output:
        np.save(args.output, logits)
    top = np.argsort(-logits[-1])[: args.top]
    print("last position top-%d:" % args.top, ", ".join(f"{i} ({logits[-1, i]:.4f})" for i in top))


if __name__ == "__main__":
    main()
