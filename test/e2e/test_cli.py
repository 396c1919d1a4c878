"""The compile/inspect command line on a real export: phases, resumable
bytecode, per-pass dumps, IR printing, error exits, and outputs that are
never left half-written or clobbered on failure. The inspect checks cover
the statistics in passes/analysis/ModelStats.cpp (FLOPs per phase and batch)."""
import glob
import os
import re
import tempfile

from lathe_test_util import Checker, op_counts, parse_args, run


def flops(text, phase):
    block = text.split(f"== phase: {phase} ==")[1]
    m = re.search(r"FLOPs at batch \d+, seq \d+: ([\d.]+) (\w?)FLOP", block)
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]
    return float(m.group(1)) * scale


def main():
    args = parse_args()
    lathe = args.lathe
    c = Checker()
    model = glob.glob(os.path.join(args.models, "generated", "gpt2-tiny", "*.opset17.onnx"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)
        # Phases and resuming from bytecode give the same IR as one run.
        rc, _, err = run([lathe, "compile", model, "--compile-to=import", "-o", p("a.mlirbc")])
        c.expect(rc == 0, f"import to bytecode: {err}")
        rc, _, err = run([lathe, "compile", p("a.mlirbc"), "--compile-from=import", "-o", p("resumed.mlir")])
        c.expect(rc == 0, f"resume from bytecode: {err}")
        rc, _, err = run([lathe, "compile", model, "--compile-to=simplify", "-o", p("direct.mlir")])
        c.expect(rc == 0, f"direct simplify: {err}")
        if rc == 0 and os.path.exists(p("resumed.mlir")):
            c.expect(op_counts(open(p("resumed.mlir")).read()) == op_counts(open(p("direct.mlir")).read()),
                     "resumed and direct simplify differ")
            text = open(p("direct.mlir")).read()
            c.expect('lathe.phase = "simplify"' in text, "output does not record its phase")
            c.expect('loc("/h.0/attn/' in text, "ONNX node names are not kept as locations")
            c.expect(not re.search(r'"0x[0-9A-F]{200,}"', text), "text output contains weight blobs")
        # Wrong resume phase, unknown phase, bad output name.
        rc, _, err = run([lathe, "compile", p("resumed.mlir"), "--compile-from=import", "-o", p("x.mlir")])
        c.expect(rc != 0 and "was written after phase 'lower'" in err, f"wrong --compile-from accepted: {err}")
        rc, _, err = run([lathe, "compile", model, "--compile-to=bogus"])
        c.expect(rc == 2 and "import, simplify" in err, f"unknown phase: rc={rc} {err}")
        rc, _, err = run([lathe, "compile", model, "-o", p("x.txt")])
        c.expect(rc != 0 and ".mlir" in err, f"bad output extension: rc={rc} {err}")
        # Per-pass dumps: numbered, only for passes that changed the IR, weights elided.
        rc, _, err = run([lathe, "compile", model, "--compile-to=simplify", "--dump-dir", p("dump"), "-o", p("d.mlir")])
        dumps = sorted(os.listdir(p("dump"))) if os.path.isdir(p("dump")) else []
        c.expect(rc == 0 and len(dumps) >= 5, f"dump dir has {len(dumps)} files")
        c.expect(all(re.match(r"\d{3}_lathe-[a-z-]+\.mlir$|\d{3}_cse\.mlir$", d) for d in dumps), f"dump names: {dumps}")
        c.expect(any("fuse-attention" in d for d in dumps), "no dump after lathe-fuse-attention")
        c.expect(len(dumps) < 24, f"{len(dumps)} dumps: unchanged passes were dumped too")
        for d in dumps:
            c.expect(not re.search(r'"0x[0-9A-F]{200,}"', open(os.path.join(p("dump"), d)).read()), f"{d} contains weights")
        rc, out, err = run([lathe, "compile", model, "--compile-to=simplify", "--print-ir-after=lathe-fuse-attention",
                            "-o", p("e.mlir")])
        c.expect(rc == 0 and err.count("IR Dump After") == 1 and "lathe.attention" in err,
                 f"--print-ir-after printed {err.count('IR Dump After')} dumps")
        # A failing compile leaves an existing output untouched.
        with open(p("keep.mlir"), "w") as f:
            f.write("precious")
        bad = os.path.join(args.models, "unsupported", "mixed_unsupported.opset17.onnx")
        rc, _, err = run([lathe, "compile", bad, "-o", p("keep.mlir")])
        c.expect(rc == 1 and "cannot be imported" in err, f"unsupported compile: rc={rc} {err}")
        c.expect(open(p("keep.mlir")).read() == "precious", "existing output was overwritten by a failed compile")
        c.expect(not [f for f in os.listdir(tmp) if "temp" in f], "temporary files left behind")
        # inspect: both phases, from ONNX and from bytecode; FLOPs scale with batch.
        rc, out1, err = run([lathe, "inspect", model, "--batch", "1", "--seq", "32"])
        c.expect(rc == 0 and "== phase: import ==" in out1 and "== phase: simplify ==" in out1, f"inspect: {err}")
        rc, out2, err = run([lathe, "inspect", p("a.mlirbc"), "--batch", "2", "--seq", "32"])
        c.expect(rc == 0 and "lathe.attention" in out2, f"inspect bytecode: {err}")
        if rc == 0:
            f1, f2 = flops(out1, "simplify"), flops(out2, "simplify")
            c.expect(abs(f2 / f1 - 2.0) < 0.02, f"FLOPs at batch 2 / batch 1 = {f2 / f1:.3f}, expected 2")
            c.expect(abs(flops(out1, "import") / f1 - 1.0) < 0.05, "import and simplify FLOPs disagree by > 5%")
            c.expect("unresolved shapes" not in out1, "inspect left ops with unresolved shapes")
    c.finish()


if __name__ == "__main__":
    main()
