"""Incremental decoding (KV cache) on the generated decoder exports and the errors around it.

a. `lathe inspect` says every causal decoder export (GPT2Model, GPT2LMHeadModel, LlamaModel, the
   transformers-4.36 LlamaModel with cos/sin caches) runs incrementally, and says why not for
   encoders (BertModel, MiniLM: attention not causal);
b. `lathe run --incremental N` (N = 1 and 4 tokens per step) equals the full-sequence run within
   TOL at every position, batch 1 and 2, sequence 9 and 33, opsets 14 and 17; where a torch
   reference has an all-ones mask, the incremental outputs match it within TOL too;
c. `lathe generate --prompt-ids ... --output-ids F.npy` on the GPT2LMHeadModel export: int64 ids,
   prompt excluded, each the argmax of the full-sequence logits of everything before it (greedy);
   sampling with a seed is reproducible and stays in the vocabulary; top-k 1 equals greedy;
d. errors exit 1 with a message: generate on an encoder names the non-causal attention; on a
   decoder without an output head (GPT2Model: last_hidden_state) says there are no logits; a prompt
   and --max-new-tokens beyond --max-context; a non-numeric --prompt-ids entry; --prompt on an
   artifact without a tokenizer; --incremental with a padded attention mask.
"""
import glob
import os
import tempfile

import numpy as np

from lathe_test_util import Checker, parse_args, run, scratch_dir

TOL = 1e-4
DECODERS = ["gpt2-tiny", "gpt2-lm-tiny", "llama-tiny", "llama-tiny-cached"]
ENCODERS = ["bert-tiny"]


def main():
    args = parse_args()
    c = Checker()
    tmp = scratch_dir("lathe-inc-")
    rng = np.random.default_rng(5)

    def compile_model(path):
        out = os.path.join(tmp, os.path.basename(path) + ".lathe")
        rc, _, err = run([args.lathe, "compile", path, "-o", out])
        c.expect(rc == 0, f"compile {path}: {err.strip()[:300]}")
        return out if rc == 0 else None

    def lathe_run(artifact, feeds, incremental=None):
        d = tempfile.mkdtemp(dir=tmp)
        cmd = [args.lathe, "run", artifact, "--output-dir", d, "--threads", "2"]
        for name, value in feeds.items():
            np.save(os.path.join(d, name + ".npy"), value)
            cmd += ["--input", f"{name}={os.path.join(d, name + '.npy')}"]
        if incremental:
            cmd += ["--incremental", str(incremental)]
        rc, out, err = run(cmd)
        if rc != 0:
            return None, err
        name = out.split(":")[0]
        return np.load(os.path.join(d, name + ".npy")), ""

    for family in DECODERS:
        for opset in (14, 17):
            path = os.path.join(args.models, "generated", family, f"{family}.opset{opset}.onnx")
            if not os.path.exists(path):
                c.expect(False, f"{path} missing")
                continue
            art = compile_model(path)
            if not art:
                continue
            rc, out, _ = run([args.lathe, "inspect", art])
            c.expect("incremental       yes" in out, f"{family} opset {opset}: inspect does not say incremental: "
                     + next((l for l in out.splitlines() if l.startswith("incremental")), "(no line)"))
            worst = 0.0
            for batch, seq in ((1, 9), (2, 33)):
                ids = rng.integers(1, 1000, (batch, seq)).astype(np.int64)
                feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
                full, err = lathe_run(art, feeds)
                c.expect(full is not None, f"{family}: full run failed: {err}")
                for step in (1, 4):
                    inc, err = lathe_run(art, feeds, step)
                    c.expect(inc is not None, f"{family} --incremental {step}: {err.strip()}")
                    if full is None or inc is None:
                        continue
                    diff = float(np.abs(inc - full).max())
                    worst = max(worst, diff)
                    c.expect(diff <= TOL, f"{family} opset {opset} b{batch} s{seq} step {step}: |incremental - full| = {diff:.2e}")
            # Against torch where the reference has no padding.
            for ref in sorted(glob.glob(os.path.join(os.path.dirname(path), "b*_s*"))):
                mask = np.load(os.path.join(ref, "inputs", "attention_mask.npy"))
                if not np.all(mask == 1):
                    continue
                feeds = {n: np.load(os.path.join(ref, "inputs", n + ".npy")) for n in ("input_ids", "attention_mask")}
                inc, err = lathe_run(art, feeds, 1)
                want = np.load(glob.glob(os.path.join(ref, "outputs", "*.npy"))[0])
                if inc is not None:
                    diff = float(np.abs(inc - want).max())
                    worst = max(worst, diff)
                    c.expect(diff <= TOL + TOL * np.abs(want).max(), f"{family} {os.path.basename(ref)}: vs torch {diff:.2e}")
            print(f"{family} opset {opset}: incremental max diff {worst:.2e}")

    # Encoders are refused with the reason.
    minilm = os.path.join(args.models, "real", "all-minilm-l6-v2", "all-minilm-l6-v2.opset17.onnx")
    for path in [os.path.join(args.models, "generated", e, f"{e}.opset17.onnx") for e in ENCODERS] + [minilm]:
        art = compile_model(path)
        if not art:
            continue
        rc, out, _ = run([args.lathe, "inspect", art])
        c.expect("incremental       no: " in out and "not causal" in out, f"{path}: inspect does not explain: {out[:200]}")
        rc, out, err = run([args.lathe, "generate", art, "--prompt-ids", "1,2,3"])
        c.expect(rc == 1 and "cannot generate" in err and "not causal" in err, f"{path}: generate: rc {rc} {err.strip()}")

    # Generation from ids on a plain causal-LM export.
    lm = compile_model(os.path.join(args.models, "generated", "gpt2-lm-tiny", "gpt2-lm-tiny.opset17.onnx"))
    if lm:
        prompt = [5, 17, 400, 3]
        ids_file = os.path.join(tmp, "gen.npy")
        rc, out, err = run([args.lathe, "generate", lm, "--prompt-ids", ",".join(map(str, prompt)),
                            "--max-new-tokens", "12", "--output-ids", ids_file])
        c.expect(rc == 0 and "decode" in err and "tokens/s" in err, f"generate: rc {rc} {err.strip()}")
        if rc == 0:
            gen = np.load(ids_file)
            c.expect(gen.dtype == np.int64 and gen.shape == (12,), f"--output-ids: {gen.dtype} {gen.shape}")
            seq = np.array([prompt + list(gen[:-1])], dtype=np.int64)
            logits, err = lathe_run(lm, {"input_ids": seq, "attention_mask": np.ones_like(seq)})
            if logits is not None:
                want = logits[0, len(prompt) - 1:].argmax(-1)
                c.expect(np.array_equal(want, gen), f"greedy ids {gen.tolist()} != argmax of full logits {want.tolist()}")
            sampled = []
            for _ in range(2):
                rc, out, err = run([args.lathe, "generate", lm, "--prompt-ids", "5,17", "--max-new-tokens", "10",
                                    "--temperature", "0.9", "--top-k", "50", "--top-p", "0.9", "--seed", "7",
                                    "--output-ids", ids_file])
                c.expect(rc == 0, f"sampling: {err.strip()}")
                sampled.append(np.load(ids_file) if rc == 0 else None)
            if sampled[0] is not None and sampled[1] is not None:
                c.expect(np.array_equal(sampled[0], sampled[1]), "the same seed gave different samples")
                c.expect(sampled[0].min() >= 0 and sampled[0].max() < 1000, f"sampled ids outside the vocabulary: {sampled[0]}")
            rc, out, err = run([args.lathe, "generate", lm, "--prompt-ids", ",".join(map(str, prompt)),
                                "--max-new-tokens", "12", "--temperature", "1.5", "--top-k", "1", "--output-ids", ids_file])
            c.expect(rc == 0 and np.array_equal(np.load(ids_file), gen), "top-k 1 differs from greedy")

        def expect_error(what, cmd, needle):
            rc, out, err = run(cmd)
            c.expect(rc == 1 and needle in err, f"{what}: rc {rc}, stderr {err.strip()!r} (expected {needle!r})")

        expect_error("context too small", [args.lathe, "generate", lm, "--prompt-ids", "1,2,3", "--max-new-tokens", "4",
                                           "--max-context", "5"], "exceed --max-context 5")
        expect_error("bad prompt ids", [args.lathe, "generate", lm, "--prompt-ids", "1,x,3"], "'x' is not a token id")
        expect_error("text prompt without tokenizer", [args.lathe, "generate", lm, "--prompt", "hello"], "has no tokenizer")
        base = compile_model(os.path.join(args.models, "generated", "gpt2-tiny", "gpt2-tiny.opset17.onnx"))
        if base:
            expect_error("no logits output", [args.lathe, "generate", base, "--prompt-ids", "1,2"], "no logits output")
        ids = np.ones((1, 6), dtype=np.int64)
        mask = ids.copy()
        mask[0, 4:] = 0
        d = tempfile.mkdtemp(dir=tmp)
        np.save(os.path.join(d, "i.npy"), ids)
        np.save(os.path.join(d, "m.npy"), mask)
        expect_error("padded mask", [args.lathe, "run", lm, "--input", f"input_ids={d}/i.npy", "--input",
                                     f"attention_mask={d}/m.npy", "--incremental", "1", "--output-dir", d], "all-ones")
    c.finish()


if __name__ == "__main__":
    main()
