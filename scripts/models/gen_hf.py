#!/usr/bin/env python3
"""Small HF transformer models with random (seeded) weights, exported like real HF exports.

Writes <out>/generated/{bert-tiny,gpt2-tiny,llama-tiny,llama-tiny-cached}/:
  <name>.opset14.onnx, <name>.opset17.onnx     torch.onnx.export (torch 1.13), dynamic batch/sequence
  <name>.opset{18,19,20,21}.onnx                onnx.version_converter from the opset-17 file
  b2_s16/, b1_s7/, b3_s33/                      inputs + torch reference outputs (.npy)
  info.json
Every ONNX file is checked with onnx.checker (full_check) and run with onnxruntime against
the torch reference outputs (|ort - torch| <= 1e-4 + 1e-4*|torch|). Any failure exits non-zero.

llama-tiny-cached is llama-tiny (same config, seed, weights and reference inputs) exported the way
transformers 4.31-4.37 exported LlamaModel: while it is built, run and exported, the 4.49 classes are
monkeypatched (see legacy_llama_436) with re-implementations of the transformers 4.36 code
(per-attention LlamaRotaryEmbedding with cos_cached/sin_cached buffers sliced by the traced key
length and gathered with position_ids; the 4D mask from _make_causal_mask/_expand_mask). Its torch
outputs are also compared with the unpatched 4.49 model.

Run with the venv python: .venv/bin/python scripts/models/gen_hf.py --out build/models
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.quiet_warnings()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import numpy_helper, version_converter  # noqa: E402

EXPORT_OPSETS = (14, 17)
CONVERTED_OPSETS = (18, 19, 20, 21)
MAX_BYTES = 2 * 1024 * 1024
FAMILIES = ("bert", "gpt2", "gpt2-lm", "llama", "llama-cached")
# Weight seed and reference-input seed of each family. llama-cached deliberately reuses llama's seed:
# same weights and inputs, so its outputs must equal llama-tiny's (checked against the 4.49 model).
SEEDS = {"bert": 1, "gpt2": 2, "llama": 3, "llama-cached": 3, "gpt2-lm": 4}
NAMES = {"llama-cached": "llama-tiny-cached"}


def build(family: str):
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, GPT2Model, LlamaConfig, LlamaModel)
    if family == "bert":
        cfg = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=128, type_vocab_size=2,
                         hidden_act="gelu", initializer_range=0.1, pad_token_id=0)
        cls, inputs, outputs, pad_id, low = BertModel, ["input_ids", "attention_mask", "token_type_ids"], \
            ["last_hidden_state", "pooler_output"], 0, 1
    elif family == "gpt2":
        cfg = GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                         activation_function="gelu_new", initializer_range=0.1)
        cls, inputs, outputs, pad_id, low = GPT2Model, ["input_ids", "attention_mask"], ["last_hidden_state"], None, 0
    elif family == "gpt2-lm":  # a plain causal LM export (tied head, logits), for generation from ids
        cfg = GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                         activation_function="gelu_new", initializer_range=0.1)
        cls, inputs, outputs, pad_id, low = GPT2LMHeadModel, ["input_ids", "attention_mask"], ["logits"], None, 0
    elif family in ("llama", "llama-cached"):
        cfg = LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=128, rope_theta=10000.0,
                          max_position_embeddings=128, rms_norm_eps=1e-6, hidden_act="silu",
                          initializer_range=0.1, tie_word_embeddings=False)
        cls, inputs, outputs, pad_id, low = LlamaModel, ["input_ids", "attention_mask"], ["last_hidden_state"], None, 0
    else:
        raise ValueError(family)
    cfg.use_cache = False
    cfg.return_dict = True
    cfg._attn_implementation = "eager"  # torch 1.13 has no SDPA; HF would pick eager anyway
    return cls, cfg, inputs, outputs, pad_id, low


# ---------------------------------------------------------------------------------------------
# llama-cached: LlamaModel as transformers 4.36 wrote it, patched into the 4.49 classes.
#
# The functions below re-implement transformers v4.36 (models/llama/modeling_llama.py and
# modeling_attn_mask_utils.py; 4.31-4.37 trace to the same ONNX pattern) for the eager path with
# rope_scaling=None and no KV cache. They are installed only inside legacy_llama_436(), i.e. only
# while the llama-cached model is built, run and exported; the 4.49 originals are restored after.
#
#   4.49                                              4.36 (what is patched in)
#   LlamaModel.rotary_emb(hidden, position_ids) ->    no model-level rotary (returns None; the
#     cos/sin from inv_freq @ position_ids              decoder layers pass it on unused)
#   LlamaAttention: cos/sin from position_embeddings  LlamaAttention.rotary_emb (per layer) holds
#                                                       cos_cached/sin_cached [max_pos, head_dim];
#                                                       forward slices [:kv_seq_len] (traced
#                                                       key_states.shape[-2]) and gathers them
#                                                       with position_ids in apply_rotary_pos_emb
#   _update_causal_mask: full/triu/arange>cache_pos,  _prepare_4d_causal_attention_mask:
#     padding via slice-assign                          _make_causal_mask + _expand_mask, masked_fill
#   position_ids = arange(0, S).unsqueeze(0)          the same (4.36: arange(0, S + 0).unsqueeze(0)),
#                                                       so LlamaModel.forward is not patched
# ---------------------------------------------------------------------------------------------

class LlamaRotaryEmbedding436(torch.nn.Module):
    """transformers 4.36 LlamaRotaryEmbedding (verbatim apart from the name)."""

    def __init__(self, dim, max_position_embeddings=2048, base=10000, device=None):
        super().__init__()

        self.dim = dim
        self.max_position_embeddings = max_position_embeddings
        self.base = base
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2).float().to(device) / self.dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

        # Build here to make `torch.jit.trace` work.
        self._set_cos_sin_cache(
            seq_len=max_position_embeddings, device=self.inv_freq.device, dtype=torch.get_default_dtype()
        )

    def _set_cos_sin_cache(self, seq_len, device, dtype):
        self.max_seq_len_cached = seq_len
        t = torch.arange(self.max_seq_len_cached, device=device, dtype=self.inv_freq.dtype)

        freqs = torch.outer(t, self.inv_freq)
        # Different from paper, but it uses a different permutation in order to obtain the same calculation
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos().to(dtype), persistent=False)
        self.register_buffer("sin_cached", emb.sin().to(dtype), persistent=False)

    def forward(self, x, seq_len=None):
        # x: [bs, num_attention_heads, seq_len, head_size]
        if seq_len > self.max_seq_len_cached:
            self._set_cos_sin_cache(seq_len=seq_len, device=x.device, dtype=x.dtype)

        return (
            self.cos_cached[:seq_len].to(dtype=x.dtype),
            self.sin_cached[:seq_len].to(dtype=x.dtype),
        )


def _rotate_half_436(x):
    """Rotates half the hidden dims of the input."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _apply_rotary_pos_emb_436(q, k, cos, sin, position_ids, unsqueeze_dim=1):
    cos = cos[position_ids].unsqueeze(unsqueeze_dim)
    sin = sin[position_ids].unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (_rotate_half_436(q) * sin)
    k_embed = (k * cos) + (_rotate_half_436(k) * sin)
    return q_embed, k_embed


def _repeat_kv_436(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def _make_causal_mask_436(input_ids_shape, dtype, device, past_key_values_length=0):
    """4.36 AttentionMaskConverter._make_causal_mask (sliding_window=None, as for Llama)."""
    bsz, tgt_len = input_ids_shape
    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min, device=device)
    mask_cond = torch.arange(mask.size(-1), device=device)
    mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)

    mask = mask.to(dtype)

    if past_key_values_length > 0:
        mask = torch.cat([torch.zeros(tgt_len, past_key_values_length, dtype=dtype, device=device), mask], dim=-1)

    return mask[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len + past_key_values_length)


def _expand_mask_436(mask, dtype, tgt_len=None):
    """4.36 AttentionMaskConverter._expand_mask: [bsz, src] -> inverted additive [bsz, 1, tgt, src]."""
    bsz, src_len = mask.size()
    tgt_len = tgt_len if tgt_len is not None else src_len

    expanded_mask = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)

    inverted_mask = 1.0 - expanded_mask

    return inverted_mask.masked_fill(inverted_mask.to(torch.bool), torch.finfo(dtype).min)


def _prepare_4d_causal_attention_mask_436(attention_mask, input_shape, inputs_embeds, past_key_values_length):
    """4.36 _prepare_4d_causal_attention_mask with AttentionMaskConverter(is_causal=True).to_4d /
    to_causal_4d inlined."""
    key_value_length = input_shape[-1] + past_key_values_length
    dtype = inputs_embeds.dtype
    if attention_mask is not None:
        # to_4d(attention_mask, input_shape[-1], key_value_length, dtype)
        query_length = input_shape[-1]
        input_shape = (attention_mask.shape[0], query_length)
        causal_4d_mask = None
        if input_shape[-1] > 1:
            causal_4d_mask = _make_causal_mask_436(input_shape, dtype, device=attention_mask.device,
                                                   past_key_values_length=key_value_length - query_length)
        expanded_attn_mask = _expand_mask_436(attention_mask, dtype, tgt_len=input_shape[-1]).to(
            attention_mask.device)
        if causal_4d_mask is not None:
            expanded_attn_mask = causal_4d_mask.masked_fill(expanded_attn_mask.bool(), torch.finfo(dtype).min)
        return expanded_attn_mask
    # to_causal_4d(input_shape[0], input_shape[-1], key_value_length, dtype, device)
    if input_shape[-1] > 1:
        return _make_causal_mask_436(input_shape, dtype, device=inputs_embeds.device,
                                     past_key_values_length=key_value_length - input_shape[-1])
    return None


def _attention_init_436(orig_init):
    def __init__(self, config, layer_idx=None):
        orig_init(self, config, layer_idx)
        if getattr(config, "rope_scaling", None) is not None:
            raise NotImplementedError("llama-cached re-implements 4.36 rope without rope_scaling only")
        # 4.36 LlamaAttention.__init__ attributes and _init_rope() (rope_scaling None)
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.hidden_size // self.num_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.max_position_embeddings = config.max_position_embeddings
        self.rope_theta = config.rope_theta
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.rotary_emb = LlamaRotaryEmbedding436(
            self.head_dim, max_position_embeddings=self.max_position_embeddings, base=self.rope_theta)
    return __init__


def _attention_forward_436(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                           output_attentions=False, use_cache=False, **kwargs):
    """4.36 LlamaAttention.forward (eager, pretraining_tp=1). Takes the 4.49 decoder layer's keyword
    arguments (position_embeddings and cache_position arrive in **kwargs and are unused, as in 4.36)
    and returns the 4.49 pair (attn_output, attn_weights)."""
    if past_key_value is not None:
        raise NotImplementedError("llama-cached is exported without a KV cache")
    bsz, q_len, _ = hidden_states.size()

    query_states = self.q_proj(hidden_states)
    key_states = self.k_proj(hidden_states)
    value_states = self.v_proj(hidden_states)

    query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
    key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
    value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)

    kv_seq_len = key_states.shape[-2]
    cos, sin = self.rotary_emb(value_states, seq_len=kv_seq_len)
    query_states, key_states = _apply_rotary_pos_emb_436(query_states, key_states, cos, sin, position_ids)

    key_states = _repeat_kv_436(key_states, self.num_key_value_groups)
    value_states = _repeat_kv_436(value_states, self.num_key_value_groups)

    attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)

    if attn_weights.size() != (bsz, self.num_heads, q_len, kv_seq_len):
        raise ValueError(
            f"Attention weights should be of size {(bsz, self.num_heads, q_len, kv_seq_len)}, but is"
            f" {attn_weights.size()}"
        )

    if attention_mask is not None:
        if attention_mask.size() != (bsz, 1, q_len, kv_seq_len):
            raise ValueError(
                f"Attention mask should be of size {(bsz, 1, q_len, kv_seq_len)}, but is {attention_mask.size()}"
            )
        attn_weights = attn_weights + attention_mask

    # upcast attention to fp32
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
    attn_weights = torch.nn.functional.dropout(attn_weights, p=self.attention_dropout, training=self.training)
    attn_output = torch.matmul(attn_weights, value_states)

    if attn_output.size() != (bsz, self.num_heads, q_len, self.head_dim):
        raise ValueError(
            f"`attn_output` should be of size {(bsz, self.num_heads, q_len, self.head_dim)}, but is"
            f" {attn_output.size()}"
        )

    attn_output = attn_output.transpose(1, 2).contiguous()
    attn_output = attn_output.reshape(bsz, q_len, self.hidden_size)
    attn_output = self.o_proj(attn_output)

    if not output_attentions:
        attn_weights = None
    return attn_output, attn_weights


def _update_causal_mask_436(self, attention_mask, input_tensor, cache_position, past_key_values,
                            output_attentions=False):
    """Replaces 4.49 LlamaModel._update_causal_mask (same signature) with the 4.36 LlamaModel.forward
    mask step: _prepare_4d_causal_attention_mask(attention_mask, (batch_size, seq_length),
    inputs_embeds, past_key_values_length)."""
    if past_key_values is not None and past_key_values.get_seq_length() > 0:
        raise NotImplementedError("llama-cached is exported without a KV cache")
    batch_size, seq_length = input_tensor.shape[:2]
    past_key_values_length = 0
    return _prepare_4d_causal_attention_mask_436(attention_mask, (batch_size, seq_length), input_tensor,
                                                 past_key_values_length)


def _no_model_rotary_init(self, config, device=None):
    torch.nn.Module.__init__(self)  # 4.36 LlamaModel has no model-level rotary embedding


def _no_model_rotary_forward(self, x, position_ids):
    return None  # the decoder layers pass it on as position_embeddings; the 4.36 attention ignores it


@contextlib.contextmanager
def set_attrs(assignments):
    """Sets (cls, attr, value) for the with-block and restores the previous class attributes after."""
    saved = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in assignments]
    try:
        for cls, attr, value in assignments:
            setattr(cls, attr, value)
        yield saved
    finally:
        for cls, attr, value in reversed(saved):
            setattr(cls, attr, value)


def legacy_llama_436():
    """Installs the 4.36 re-implementations into transformers' 4.49 Llama classes for the with-block
    and restores the originals on exit; `as` gives the originals as (cls, attr, fn) triples. Build, run
    and export the model inside the with-block."""
    from transformers.models.llama import modeling_llama as ml
    return set_attrs([
        (ml.LlamaRotaryEmbedding, "__init__", _no_model_rotary_init),
        (ml.LlamaRotaryEmbedding, "forward", _no_model_rotary_forward),
        (ml.LlamaAttention, "__init__", _attention_init_436(ml.LlamaAttention.__init__)),
        (ml.LlamaAttention, "forward", _attention_forward_436),
        (ml.LlamaModel, "_update_causal_mask", _update_causal_mask_436),
    ])


def check_cos_cache_slice(path: str, cos_cached: np.ndarray) -> str:
    """Checks that the exported graph slices the constant cos cache ([max_pos, head_dim]; a Constant
    node or an initializer) along axis 0 with an end computed from a Shape chain, and that the slice
    (after the Cast torch emits for `.to(dtype)`) is gathered with indices built by a Range
    (position_ids). Returns a one-line description; raises if no such path exists."""
    g = onnx.load(path).graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def reaches(name: str, op: str, depth: int = 0) -> bool:
        n = producer.get(name)
        if n is None or depth > 20:
            return False
        return n.op_type == op or any(reaches(i, op, depth + 1) for i in n.input if i)

    cos_names = [k for k, v in consts.items()
                 if v.shape == cos_cached.shape and np.allclose(v, cos_cached, rtol=0, atol=1e-6)]
    found = []
    for name in cos_names:
        for sl in consumers.get(name, []):
            if sl.op_type != "Slice" or sl.input[0] != name or len(sl.input) < 3 or sl.input[2] in consts \
                    or not reaches(sl.input[2], "Shape"):
                continue
            axes = consts.get(sl.input[3]) if len(sl.input) > 3 and sl.input[3] else np.array([0])
            if axes is None or list(np.asarray(axes).reshape(-1)) != [0]:
                continue
            out, chain = sl.output[0], [sl.name]
            while True:
                nxt = [c for c in consumers.get(out, []) if c.op_type in ("Cast", "Identity")]
                if not nxt:
                    break
                out = nxt[0].output[0]
                chain.append(nxt[0].name)
            for ga in consumers.get(out, []):
                if ga.op_type == "Gather" and ga.input[0] == out and reaches(ga.input[1], "Range"):
                    found.append(" -> ".join(chain + [ga.name]))
    if not found:
        raise RuntimeError(f"no Slice of the constant cos cache {list(cos_cached.shape)} with a Shape-derived "
                           f"end, gathered with Range-built position ids (cos-shaped constants: {cos_names})")
    return f"{len(found)} x Slice(cos cache {list(cos_cached.shape)}, end from Shape) -> Gather(position_ids): " \
           + "; ".join(found)


def randomize_small_params(model: torch.nn.Module, gen: torch.Generator) -> None:
    """HF init leaves norm weights = 1 and biases = 0; make them random too so that a
    swapped gamma/beta or a dropped bias shows up in the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() != 1:
                continue
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
            else:
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)


def torch_forward(model, input_names, output_names, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(feeds[k]) for k in input_names}, return_dict=True)
    return {k: out[k].detach().numpy().astype(np.float32) for k in output_names}


def export(model, input_names, output_names, feeds, path, opset):
    t = [torch.from_numpy(feeds[k]) for k in input_names]
    # Positional input_ids plus kwargs dict: GPT2Model's second positional parameter is
    # past_key_values, so the mask must travel by keyword (as optimum does).
    args = (t[0], {k: v for k, v in zip(input_names[1:], t[1:])})
    dyn = {k: {0: "batch", 1: "sequence"} for k in input_names}
    dyn.update({k: ({0: "batch", 1: "sequence"} if k == "last_hidden_state" else {0: "batch"})
                for k in output_names})
    torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                      opset_version=opset, dynamic_axes=dyn, do_constant_folding=True)
    m = onnx.load(path)
    got_in = [i.name for i in m.graph.input]
    got_out = [o.name for o in m.graph.output]
    if got_in != input_names or got_out != output_names:
        raise RuntimeError(f"{path}: exported inputs {got_in} / outputs {got_out}, "
                           f"expected {input_names} / {output_names}")
    onnx.checker.check_model(path, full_check=True)


def convert(src_path: str, dst_path: str, target: int) -> None:
    m = onnx.load(src_path)
    c = version_converter.convert_version(m, target)
    # The converter rewrites opset_import but leaves ir_version at torch's 8; a file with
    # opset >= 19 and IR 8 is inconsistent, so use the IR version onnx pairs with the opset.
    c.ir_version = max(c.ir_version, common.minimum_ir_version(target))
    onnx.checker.check_model(c, full_check=True)
    onnx.save(c, dst_path)
    onnx.checker.check_model(dst_path, full_check=True)


def check_legacy_model(model, cls, cfg, seed, originals, input_names, output_names, ref_dirs) -> dict:
    """llama-cached only, called inside legacy_llama_436() (originals: what it replaced). The model
    must have the 4.36 structure, and its reference outputs must match the same weights run by the
    unpatched 4.49 LlamaModel: both compute the same function, only the ONNX pattern differs."""
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    for i, layer in enumerate(model.layers):
        r = getattr(layer.self_attn, "rotary_emb", None)
        if not isinstance(r, LlamaRotaryEmbedding436) or \
                tuple(r.cos_cached.shape) != (cfg.max_position_embeddings, head_dim):
            raise RuntimeError(f"layer {i}: no 4.36 rotary embedding with a "
                               f"[{cfg.max_position_embeddings}, {head_dim}] cos cache")
    if list(model.rotary_emb.buffers()):
        raise RuntimeError("model-level rotary embedding has buffers; the 4.36 patch is not active")
    worst = 0.0
    with set_attrs(originals):
        torch.manual_seed(seed)
        plain = cls(cfg).eval()
        if hasattr(plain.layers[0].self_attn, "rotary_emb"):
            raise RuntimeError("the 4.49 reference model was built with the 4.36 patch active")
        plain.load_state_dict(model.state_dict(), strict=True)
        for rd in ref_dirs:
            feeds, ref = common.load_reference(rd)
            got = torch_forward(plain, input_names, output_names, feeds)
            for k in output_names:
                err = np.abs(got[k].astype(np.float64) - ref[k].astype(np.float64))
                if np.any(err > common.ATOL + common.RTOL * np.abs(ref[k].astype(np.float64))):
                    raise RuntimeError(f"{rd}: output {k} of the 4.36 re-implementation differs from the "
                                       f"unpatched transformers model by {err.max():.3e}")
                worst = max(worst, float(err.max()))
    return {"transformers_4_49_model": {"version": __import__("transformers").__version__,
                                        "max_abs_diff": worst}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="models dir (e.g. build/models)")
    ap.add_argument("--only", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    args = ap.parse_args()
    torch.set_num_threads(1)

    failures: list[str] = []
    for family in args.only:
        if family == "llama-cached":
            with legacy_llama_436() as originals:
                failures += generate(family, args.out, originals)
        else:
            failures += generate(family, args.out)

    if failures:
        print("gen_hf.py: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def generate(family: str, out: str, originals=None) -> list[str]:
    """Builds, references, exports, converts and checks one family; returns the failures.
    originals: for llama-cached, the 4.49 attributes that legacy_llama_436() replaced."""
    failures: list[str] = []
    seed = SEEDS[family]
    legacy = originals is not None
    t0 = time.time()
    name = NAMES.get(family, f"{family}-tiny")
    model_dir = os.path.join(out, "generated", name)
    os.makedirs(model_dir, exist_ok=True)
    cls, cfg, input_names, output_names, pad_id, low = build(family)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    randomize_small_params(model, torch.Generator().manual_seed(1000 + seed))

    ref_tags = []
    for i, (b, s) in enumerate(common.REF_SHAPES):
        rng = np.random.default_rng(100 * seed + i)
        feeds = common.make_text_inputs(rng, b, s, cfg.vocab_size, "token_type_ids" in input_names,
                                        pad_id=pad_id, low=low)
        outs = torch_forward(model, input_names, output_names, feeds)
        tag = common.shape_tag(b, s)
        common.save_reference(model_dir, tag, feeds, outs)
        ref_tags.append(tag)
    ref_dirs = [os.path.join(model_dir, t) for t in ref_tags]
    export_feeds, _ = common.load_reference(ref_dirs[0])

    extra: dict = {}
    if legacy:
        extra = check_legacy_model(model, cls, cfg, seed, originals, input_names, output_names, ref_dirs)
        print(f"  {name}: torch outputs vs unpatched transformers {extra['transformers_4_49_model']['version']}: "
              f"max |diff| = {extra['transformers_4_49_model']['max_abs_diff']:.3e}")

    files = []
    for opset in EXPORT_OPSETS:
        path = os.path.join(model_dir, f"{name}.opset{opset}.onnx")
        export(model, input_names, output_names, export_feeds, path, opset)
        err = common.verify_with_ort(path, ref_dirs)
        files.append({"path": os.path.basename(path), "format": "onnx", "opset": opset,
                      "origin": f"torch {torch.__version__} torch.onnx.export", "max_abs_err_vs_ort": err})
        print(f"  {name} opset {opset}: exported, max |ort - torch| = {err:.3e}")
    src17 = os.path.join(model_dir, f"{name}.opset17.onnx")
    for opset in CONVERTED_OPSETS:
        path = os.path.join(model_dir, f"{name}.opset{opset}.onnx")
        try:
            convert(src17, path, opset)
            err = common.verify_with_ort(path, ref_dirs)
        except Exception as e:  # report exactly which conversion failed and why
            msg = f"{name}: opset 17 -> {opset} via onnx {onnx.__version__} version_converter failed: " \
                  f"{type(e).__name__}: {e}"
            print("  FAILED " + msg, file=sys.stderr)
            failures.append(msg)
            if os.path.exists(path):
                os.remove(path)
            continue
        files.append({"path": os.path.basename(path), "format": "onnx", "opset": opset,
                      "origin": f"onnx {onnx.__version__} version_converter from opset 17",
                      "max_abs_err_vs_ort": err})
        print(f"  {name} opset {opset}: converted, max |ort - torch| = {err:.3e}")
    if legacy:
        cos = model.layers[0].self_attn.rotary_emb.cos_cached.numpy()
        for f in files:
            try:
                f["cos_cache_pattern"] = check_cos_cache_slice(os.path.join(model_dir, f["path"]), cos)
            except Exception as e:
                failures.append(f"{name}: {f['path']}: {e}")
        if files:
            print(f"  {name}: {files[0]['path']}: {files[0].get('cos_cache_pattern')}")
    for f in files:
        size = os.path.getsize(os.path.join(model_dir, f["path"]))
        if size > MAX_BYTES:
            failures.append(f"{name}: {f['path']} is {size} bytes (> {MAX_BYTES})")
    source = f"transformers {__import__('transformers').__version__} {cls.__name__}, random weights " \
             f"(torch.manual_seed({seed}), initializer_range 0.1, random norm weights/biases)"
    if legacy:
        source += "; rotary embedding, attention and causal mask monkeypatched to re-implementations of " \
                  "transformers 4.36 (per-layer cos_cached/sin_cached [max_position_embeddings, head_dim] " \
                  "sliced by the traced key length and gathered with position_ids; mask from " \
                  "_make_causal_mask/_expand_mask); same weights and reference inputs as llama-tiny"
    common.write_info(model_dir, {
        "name": name, "kind": "generated", "family": family,
        "source": source,
        "config": {k: v for k, v in cfg.to_dict().items()
                   if k in ("vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
                            "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size",
                            "rope_theta", "max_position_embeddings", "n_positions", "hidden_act",
                            "activation_function", "rms_norm_eps", "layer_norm_eps",
                            "layer_norm_epsilon", "type_vocab_size")},
        "files": files, "reference": ref_tags,
        "tolerance": {"atol": common.ATOL, "rtol": common.RTOL},
        **extra,
    })
    print(f"{name}: {len(files)} ONNX files, references {ref_tags} ({time.time() - t0:.1f} s)")
    return failures


if __name__ == "__main__":
    sys.exit(main())
