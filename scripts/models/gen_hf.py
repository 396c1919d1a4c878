#!/usr/bin/env python3
"""Small HF transformer models with random (seeded) weights, exported like real HF exports.

Writes <out>/generated/{bert-tiny,gpt2-tiny,llama-tiny}/:
  <name>.opset14.onnx, <name>.opset17.onnx     torch.onnx.export (torch 1.13), dynamic batch/sequence
  <name>.opset{18,19,20,21}.onnx                onnx.version_converter from the opset-17 file
  b2_s16/, b1_s7/, b3_s33/                      inputs + torch reference outputs (.npy)
  info.json
Every ONNX file is checked with onnx.checker (full_check) and run with onnxruntime against
the torch reference outputs (|ort - torch| <= 1e-4 + 1e-4*|torch|). Any failure exits non-zero.

Run with the venv python: .venv/bin/python scripts/models/gen_hf.py --out build/models
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.quiet_warnings()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import version_converter  # noqa: E402

EXPORT_OPSETS = (14, 17)
CONVERTED_OPSETS = (18, 19, 20, 21)
MAX_BYTES = 2 * 1024 * 1024


def build(family: str):
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2Model, LlamaConfig, LlamaModel)
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
    elif family == "llama":
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="models dir (e.g. build/models)")
    ap.add_argument("--only", nargs="*", default=["bert", "gpt2", "llama"])
    args = ap.parse_args()
    torch.set_num_threads(1)

    failures: list[str] = []
    for seed, family in enumerate(args.only, start=1):
        t0 = time.time()
        name = f"{family}-tiny"
        model_dir = os.path.join(args.out, "generated", name)
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
        for f in files:
            size = os.path.getsize(os.path.join(model_dir, f["path"]))
            if size > MAX_BYTES:
                failures.append(f"{name}: {f['path']} is {size} bytes (> {MAX_BYTES})")
        common.write_info(model_dir, {
            "name": name, "kind": "generated", "family": family,
            "source": f"transformers {__import__('transformers').__version__} {cls.__name__}, random weights "
                      f"(torch.manual_seed({seed}), initializer_range 0.1, random norm weights/biases)",
            "config": {k: v for k, v in cfg.to_dict().items()
                       if k in ("vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
                                "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size",
                                "rope_theta", "max_position_embeddings", "n_positions", "hidden_act",
                                "activation_function", "rms_norm_eps", "layer_norm_eps",
                                "layer_norm_epsilon", "type_vocab_size")},
            "files": files, "reference": ref_tags,
            "tolerance": {"atol": common.ATOL, "rtol": common.RTOL},
        })
        print(f"{name}: {len(files)} ONNX files, references {ref_tags} ({time.time() - t0:.1f} s)")

    if failures:
        print("gen_hf.py: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
