"""Every generated HF export (Bert, GPT2, Llama at opsets 14-21) and the real
MiniLM simplify to the compression-level form: every weight matmul is a
lathe.linear, every attention a lathe.attention (GPT2/Llama causal, Llama with
grouped KV heads), every norm/GELU/SiLU fused, no shape computation left, and
batch/sequence stay dynamic."""
import glob
import os
import re
import tempfile

from lathe_test_util import Checker, op_counts, parse_args, run

# family: (layers, norm op, activation op, causal, kv heads or None, extra allowed tanh)
FAMILIES = {
    "bert-tiny": dict(layers=2, norm="lathe.layer_norm", norms=5, act="lathe.gelu", causal=False, kv=None, tanh=1, linears=13),
    "gpt2-tiny": dict(layers=2, norm="lathe.layer_norm", norms=5, act="lathe.gelu", causal=True, kv=None, tanh=0, linears=12),
    "gpt2-lm-tiny": dict(layers=2, norm="lathe.layer_norm", norms=5, act="lathe.gelu", causal=True, kv=None, tanh=0, linears=13),
    "llama-tiny": dict(layers=2, norm="lathe.rms_norm", norms=5, act="lathe.silu", causal=True, kv=2, tanh=0, linears=14),
    # Older transformers (≈4.36): cos/sin caches sliced by sequence length, mask from full/arange/masked_fill.
    "llama-tiny-cached": dict(layers=2, norm="lathe.rms_norm", norms=5, act="lathe.silu", causal=True, kv=2, tanh=0, linears=14),
    "all-minilm-l6-v2": dict(layers=6, norm="lathe.layer_norm", norms=13, act="lathe.gelu", causal=False, kv=None, tanh=1, linears=37),
}
# Ops that must not survive simplification: unfused pieces and shape computation.
FORBIDDEN = ["lathe.matmul", "lathe.softmax", "lathe.reduce_mean", "lathe.erf", "lathe.sigmoid", "lathe.pow",
             "lathe.sqrt", "lathe.shape_of", "lathe.range", "lathe.fill", "lathe.trilu", "lathe.scatter_nd",
             "lathe.where", "lathe.equal", "lathe.expand", "lathe.identity", "lathe.split"]


def main():
    args = parse_args()
    files = sorted(glob.glob(os.path.join(args.models, "generated", "*", "*.onnx")) +
                   glob.glob(os.path.join(args.models, "real", "*", "*.onnx")))
    c = Checker()
    c.expect(len(files) >= 20, f"expected >= 20 ONNX models, found {len(files)}")
    seen_families = set()
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            family = os.path.basename(os.path.dirname(path))
            spec = FAMILIES.get(family)
            if spec is None:
                continue
            seen_families.add(family)
            name = os.path.basename(path)
            out = os.path.join(tmp, name + ".mlir")
            rc, _, err = run([args.lathe, "compile", path, "--compile-to=simplify", "-o", out])
            print(f"{name}: rc={rc}")
            c.expect(rc == 0, f"{name}: compile failed: {err.strip()[:500]}")
            if rc != 0:
                continue
            text = open(out).read()
            counts = op_counts(text)
            print("  " + " ".join(f"{k[6:]}={v}" for k, v in sorted(counts.items())))
            for op in FORBIDDEN:
                c.expect(counts.get(op, 0) == 0, f"{name}: {counts.get(op, 0)} {op} left")
            c.expect(counts.get("lathe.attention", 0) == spec["layers"], f"{name}: attention count {counts.get('lathe.attention', 0)} != {spec['layers']}")
            c.expect(counts.get("lathe.linear", 0) == spec["linears"], f"{name}: linear count {counts.get('lathe.linear', 0)} != {spec['linears']}")
            c.expect(counts.get(spec["norm"], 0) == spec["norms"], f"{name}: {spec['norm']} count {counts.get(spec['norm'], 0)} != {spec['norms']}")
            c.expect(counts.get(spec["act"], 0) == spec["layers"], f"{name}: {spec['act']} count {counts.get(spec['act'], 0)} != {spec['layers']}")
            c.expect(counts.get("lathe.tanh", 0) == spec["tanh"], f"{name}: tanh count {counts.get('lathe.tanh', 0)} != {spec['tanh']} (pooler only)")
            causal = re.findall(r"causal = (true|false)", text)
            c.expect(causal and all(x == ("true" if spec["causal"] else "false") for x in causal),
                     f"{name}: causal flags {causal}, expected {spec['causal']}")
            if spec["kv"]:
                kv = re.findall(r"num_kv_heads = (\d+)", text)
                c.expect(kv and all(int(k) == spec["kv"] for k in kv), f"{name}: num_kv_heads {kv} != {spec['kv']}")
            sig = re.search(r"func\.func @main\(([^)]*)\)", text)
            c.expect(sig is not None and "tensor<?x?xi64>" in sig.group(1), f"{name}: inputs are not dynamic [batch, seq]")
            # Attention masks must be per-key ([B,1,1,S]), never S x S.
            for m in re.finditer(r"lathe\.attention [^:]*: \(([^)]*)\)", text):
                types = m.group(1).split(", tensor")
                if len(types) == 4:
                    c.expect("1x1x?" in types[3], f"{name}: attention mask is not [B,1,1,S]: {types[3]}")
    for family in FAMILIES:
        c.expect(family in seen_families, f"no model of family {family} found")
    c.finish()


if __name__ == "__main__":
    main()
