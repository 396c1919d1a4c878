#!/usr/bin/env python3
"""Small GGUF copies of SmolLM2-135M with rotary-embedding variants, for the importer's rope tests
(test/gguf/test_gguf_rope_variants.py). Written with the gguf package's GGUFWriter:

* every metadata key of the source is copied with its GGUF type (tokenizer included), except
  llama.block_count, which becomes BLOCKS (2);
* only token_embd.weight, output_norm.weight and the tensors of blk.0 .. blk.{BLOCKS-1} are kept,
  each copied as its raw bytes in its original ggml type (Q4_1, Q8_0, F32: nothing is requantized);
* the variants (VARIANTS) then add or change:
    base       nothing (unscaled rope);
    linear2    llama.rope.scaling.type = "linear", llama.rope.scaling.factor = 2.0;
    ropefreqs  rope_freqs.weight, F32 [head_dim / 2]: rope_factors(head_dim) (1.0 for the highest
               frequencies rising geometrically to 8.0 for the lowest, Llama-3.1 style);
    yarn       llama.rope.scaling.type = "yarn", factor 4.0, original context 8192 (to be refused).

    .venv/bin/python scripts/models/make_gguf_variants.py OUT_DIR [--source MODEL.gguf] [--variants base,yarn]

writes OUT_DIR/<variant>.gguf (about 36 MB each; a few seconds in all). As a library:
write_variants(source, out_dir, variants) -> {variant: path}.
"""
import argparse
import os
import sys
import time

import numpy as np
import gguf

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_SOURCE = os.path.join(REPO, "build", "models", "real", "smollm2-135m-instruct",
                              "smollm2-135m-instruct-q4_1.gguf")
BLOCKS = 2
VARIANTS = ("base", "linear2", "ropefreqs", "yarn")
LINEAR_FACTOR = 2.0
YARN_FACTOR = 4.0


def rope_factors(head_dim):
    """rope_freqs for head_dim: [head_dim / 2] float32, entry i dividing inverse frequency i
    (base^(-2i/head_dim), i = 0 the highest frequency). The first quarter stays 1.0 (high
    frequencies untouched), the rest rises geometrically to 8.0 at the lowest frequency, so that
    almost every factor is distinct (an index mix-up changes the result)."""
    half = head_dim // 2
    flat = half // 4
    return np.concatenate([np.ones(flat), np.geomspace(1.0, 8.0, half - flat)]).astype(np.float32)


def _copy_field(writer, field, value_override=None):
    vtype = field.types[0]
    value = field.contents() if value_override is None else value_override
    sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
    writer.add_key_value(field.name, value, vtype, sub_type)


def _kept(name, blocks):
    if name in ("token_embd.weight", "output_norm.weight", "output.weight"):
        return True
    if name.startswith("blk."):
        return int(name.split(".")[1]) < blocks
    return False


def write_variant(reader, path, variant, blocks=BLOCKS):
    """Writes one variant of the GGUF opened by `reader` to `path`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(path, arch)  # writes general.architecture itself
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name.startswith(f"{arch}.rope.scaling."):
            continue  # the variant decides
        _copy_field(writer, field, blocks if name == f"{arch}.block_count" else None)
    if variant == "linear2":
        writer.add_string(f"{arch}.rope.scaling.type", "linear")
        writer.add_float32(f"{arch}.rope.scaling.factor", LINEAR_FACTOR)
    elif variant == "yarn":
        writer.add_string(f"{arch}.rope.scaling.type", "yarn")
        writer.add_float32(f"{arch}.rope.scaling.factor", YARN_FACTOR)
        writer.add_uint32(f"{arch}.rope.scaling.original_context_length", 8192)

    for t in reader.tensors:
        if t.name == "rope_freqs.weight" or not _kept(t.name, blocks):
            continue
        data = np.asarray(t.data)
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            # numpy order [ne1, ne0] as the reader gives it; the writer reverses it back.
            writer.add_tensor(t.name, data.reshape(tuple(int(d) for d in reversed(t.shape))))
        else:
            # raw block bytes [rows, bytes per row]; the writer turns the byte shape into elements.
            writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    if variant == "ropefreqs":
        n_embd = reader.fields[f"{arch}.embedding_length"].contents()
        n_head = reader.fields[f"{arch}.attention.head_count"].contents()
        writer.add_tensor("rope_freqs.weight", rope_factors(n_embd // n_head))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_variants(source, out_dir, variants=VARIANTS, blocks=BLOCKS):
    """Writes out_dir/<variant>.gguf for each variant; returns {variant: path}."""
    os.makedirs(out_dir, exist_ok=True)
    reader = gguf.GGUFReader(source)
    return {v: write_variant(reader, os.path.join(out_dir, v + ".gguf"), v, blocks) for v in variants}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="the SmolLM2 GGUF to copy")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    ap.add_argument("--blocks", type=int, default=BLOCKS)
    args = ap.parse_args()
    if not os.path.exists(args.source):
        sys.exit(f"{args.source} is missing (run scripts/models/prepare.sh)")
    start = time.time()
    paths = write_variants(args.source, args.out_dir, [v for v in args.variants.split(",") if v], args.blocks)
    for variant, path in paths.items():
        print(f"{variant:10s} {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    print(f"{len(paths)} files in {time.time() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
