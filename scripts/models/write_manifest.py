#!/usr/bin/env python3
"""Collects the info.json files written by the generators into <models>/manifest.json and
prints a summary table. Every *.onnx / *.gguf / *.safetensors under <models> must be described
by some info.json, and every file an info.json names must exist; otherwise it exits 1.

  write_manifest.py --out build/models             write manifest.json + print the table
  write_manifest.py --out build/models --verify generated real   only check those subdirs
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL_EXTS = (".onnx", ".gguf", ".safetensors")


def info_files(root: str, subdirs: list[str] | None = None) -> list[str]:
    subdirs = subdirs or ["real", "generated", "unsupported", "external_data"]
    out = []
    for s in subdirs:
        out += sorted(glob.glob(os.path.join(root, s, "info.json")))
        out += sorted(glob.glob(os.path.join(root, s, "*", "info.json")))
    return out


def expected_infos(root: str, sub: str) -> list[str]:
    names = {"real": ["all-minilm-l6-v2", "smollm2-135m-instruct"],
             "generated": ["bert-tiny", "gpt2-tiny", "gpt2-lm-tiny", "llama-tiny", "llama-tiny-cached"]}.get(sub)
    if names is None:
        return [os.path.join(root, sub, "info.json")]
    return [os.path.join(root, sub, n, "info.json") for n in names]


def verify(root: str, subdirs: list[str]) -> list[str]:
    problems = []
    for sub in subdirs:
        for ij in expected_infos(root, sub):
            if not os.path.exists(ij):
                problems.append(f"missing {ij}")
                continue
            base = os.path.dirname(ij)
            info = json.load(open(ij))
            for f in info["files"]:
                for p in [f["path"]] + f.get("external_data", []) + f.get("reference", []):
                    if not os.path.exists(os.path.join(base, p)):
                        problems.append(f"missing {os.path.join(base, p)} (listed in {ij})")
            for tag in info.get("reference", []):
                if not os.path.isdir(os.path.join(base, tag, "outputs")):
                    problems.append(f"missing {os.path.join(base, tag)} (listed in {ij})")
    return problems


def onnx_io(path: str) -> dict:
    import onnx
    m = onnx.load(path, load_external_data=False)

    def vi(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
                if t.elem_type != onnx.TensorProto.STRING else "string",
                "shape": [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
                          for d in t.shape.dim]}
    inits = {i.name for i in m.graph.initializer}
    return {"ir_version": m.ir_version,
            "opset_imports": {o.domain or "ai.onnx": o.version for o in m.opset_import},
            "inputs": [vi(v) for v in m.graph.input if v.name not in inits],
            "outputs": [vi(v) for v in m.graph.output],
            "num_nodes": len(m.graph.node)}


def versions() -> dict:
    import numpy
    import onnx
    import onnxruntime
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__}


def build_manifest(root: str) -> tuple[dict, list[str]]:
    problems = []
    entries = []
    described = set()
    for ij in info_files(root):
        base = os.path.dirname(ij)
        info = json.load(open(ij))
        for f in info["files"]:
            path = os.path.join(base, f["path"])
            rel = os.path.relpath(path, root)
            described.add(os.path.abspath(path))
            if not os.path.exists(path):
                problems.append(f"{rel}: listed in {ij} but missing")
                continue
            kind = info["kind"]
            case = f.get("case")
            expect = "match_reference"
            if kind == "unsupported":
                expect = "reject_unsupported_nodes"
            if kind == "external_data":
                kind = "generated"
                if case and case.startswith("escape"):
                    expect = "reject_load"
            refs = f.get("reference", info.get("reference", []))
            e = {"path": rel, "name": info["name"], "kind": kind, "family": info.get("family"),
                 "format": f["format"], "opset": f.get("opset"), "size_bytes": os.path.getsize(path),
                 "origin": f.get("origin"), "expect": expect,
                 "reference": [os.path.relpath(os.path.join(base, r), root) for r in refs]}
            if info["kind"] == "external_data":
                e["category"] = f"external_data/{case}"
                e["external_data"] = [os.path.relpath(os.path.join(base, p), root) for p in f["external_data"]]
                for k in ("external_location", "external_offset", "external_file_size", "observed"):
                    if k in f:
                        e[k] = f[k]
            if f["format"] == "onnx":
                e.update(onnx_io(path))
            for k in ("max_abs_err_vs_ort", "sha256"):
                if k in f:
                    e[k] = f[k]
            if "tolerance" in info and e["reference"]:
                e["tolerance"] = info["tolerance"]
            if info["kind"] == "unsupported":
                e["expected_unsupported"] = info["expected_unsupported"]
                e["expected_unsupported_file"] = os.path.relpath(os.path.join(base, "expected_unsupported.txt"), root)
            if info["kind"] == "real":
                for k in ("tokenizer", "pooling", "gguf", "sanity"):
                    if k in info:
                        e[k] = info[k]
                e["source"] = info["source"]
            entries.append(e)
    for p in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        # llamacpp/: llama.cpp's own copies (F32 GGUF) written by scripts/models/make_llamacpp_refs.py
        if os.path.relpath(p, root).startswith("llamacpp" + os.sep):
            continue
        if p.endswith(MODEL_EXTS) and os.path.abspath(p) not in described:
            problems.append(f"{os.path.relpath(p, root)}: model file not described by any info.json")
    manifest = {"schema": 1, "models_dir": os.path.abspath(root),
                "generated_by": "scripts/models/prepare.sh", "versions": versions(),
                "reference_layout": "<reference dir>/inputs/<input>.npy, <reference dir>/outputs/<output>.npy",
                "models": entries}
    return manifest, problems


def table(m: dict) -> str:
    rows = [("path", "kind", "opset", "size", "refs", "max|ort-ref|")]
    for e in m["models"]:
        size = e["size_bytes"]
        s = f"{size / 2**20:.1f}M" if size >= 2**20 else f"{size / 1024:.0f}K"
        err = e.get("max_abs_err_vs_ort")
        rows.append((e["path"], e["kind"] if e["expect"] == "match_reference" else f"{e['kind']}/{e['expect']}",
                     str(e["opset"] or "-"), s, str(len(e["reference"])),
                     f"{err:.2e}" if err is not None else "-"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--verify", nargs="+", help="only check that these subdirs are complete")
    args = ap.parse_args()
    if args.verify:
        problems = verify(args.out, args.verify)
        for p in problems:
            print(f"  {p}")
        return 1 if problems else 0
    manifest, problems = build_manifest(args.out)
    if problems:
        common.die("manifest: " + "; ".join(problems))
    path = os.path.join(args.out, "manifest.json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(table(manifest))
    print(f"{len(manifest['models'])} model files; manifest: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
