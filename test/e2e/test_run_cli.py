"""`lathe run/bench/inspect` on artifacts: deterministic compiles, --dump of
intermediate tensors, clear errors for wrong inputs and corrupt artifacts."""
import glob
import os
import subprocess
import tempfile
import time

import numpy as np

from lathe_test_util import Checker, parse_args, require_files, run


def main():
    args = parse_args()
    lathe = args.lathe
    c = Checker()
    model = glob.glob(os.path.join(args.models, "generated", "bert-tiny", "*.opset17.onnx"))[0]
    ref = os.path.join(os.path.dirname(model), "b2_s16")
    inputs = []
    for f in sorted(glob.glob(os.path.join(ref, "inputs", "*.npy"))):
        inputs += ["--input", f"{os.path.basename(f)[:-4]}={f}"]
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda n: os.path.join(tmp, n)
        # Deterministic: two compiles give the same bytes.
        for name in ("a.lathe", "b.lathe"):
            rc, _, err = run([lathe, "compile", model, "-o", p(name)])
            c.expect(rc == 0, f"compile: {err}")
        c.expect(open(p("a.lathe"), "rb").read() == open(p("b.lathe"), "rb").read(), "two compiles differ")
        # Resuming from bytecode gives the same artifact as compiling from ONNX.
        run([lathe, "compile", model, "--compile-to=simplify", "-o", p("s.mlirbc")])
        rc, _, err = run([lathe, "compile", p("s.mlirbc"), "-o", p("c.lathe")])
        c.expect(rc == 0, f"compile from bytecode: {err}")
        # --dump writes matching intermediates.
        rc, out, err = run([lathe, "run", p("a.lathe"), *inputs, "--output-dir", p("out"),
                            "--dump", "/encoder/layer.0/attention/self/*"])
        c.expect(rc == 0, f"run --dump: {err}")
        dumped = glob.glob(os.path.join(p("out"), "**", "*.npy"), recursive=True)
        c.expect(len(dumped) >= 4, f"--dump wrote {len(dumped)} files")
        c.expect(any("attention" in d for d in dumped), "no dumped tensor from the attention node")
        # Wrong inputs: a missing input, a wrong shape, a wrong dtype, a bad .npy.
        rc, _, err = run([lathe, "run", p("a.lathe"), *inputs[:4], "--output-dir", p("o2")])
        c.expect(rc != 0 and "token_type_ids" in err, f"missing input: rc={rc} {err}")
        bad = p("bad_shape.npy")
        np.save(bad, np.zeros((2, 3, 4), dtype=np.int64))
        rc, _, err = run([lathe, "run", p("a.lathe"), "--input", f"input_ids={bad}", *inputs[2:], "--output-dir", p("o3")])
        c.expect(rc != 0 and "input_ids" in err, f"wrong shape: rc={rc} {err}")
        np.save(bad, np.zeros((2, 16), dtype=np.float32))
        rc, _, err = run([lathe, "run", p("a.lathe"), "--input", f"input_ids={bad}", *inputs[2:], "--output-dir", p("o4")])
        c.expect(rc != 0 and "input_ids" in err, f"wrong dtype: rc={rc} {err}")
        open(bad, "wb").write(b"not an npy file")
        rc, _, err = run([lathe, "run", p("a.lathe"), "--input", f"input_ids={bad}", *inputs[2:], "--output-dir", p("o5")])
        c.expect(rc != 0 and "bad_shape.npy" in err, f"bad npy: rc={rc} {err}")
        # Corrupt artifacts: flipped byte, truncation → errors, never a crash.
        data = bytearray(open(p("a.lathe"), "rb").read())
        for label, blob in [("flipped", data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]),
                            ("truncated", data[: len(data) // 2]), ("empty", b"")]:
            open(p("bad.lathe"), "wb").write(blob)
            rc, _, err = run([lathe, "run", p("bad.lathe"), *inputs, "--output-dir", p("o6")])
            c.expect(rc == 1 and "error" in err, f"{label} artifact: rc={rc} {err}")
        # An interrupted compile never clobbers the user's file nor leaves a partial one: kill a
        # compile of SmolLM2 (a few seconds, most of it writing 0.5 GB) at points spread over its
        # run; the old artifact stays byte for byte, and no temporary file is left in the folder.
        gguf = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
        require_files(gguf)
        os.makedirs(p("interrupt"))
        # Where the file system has no O_TMPFILE the writer falls back to a named temporary
        # file, which a kill during the write leaves behind (never at the user's path).
        try:
            os.close(os.open(p("interrupt"), os.O_TMPFILE | os.O_WRONLY))
            anonymous_files = True
        except OSError:
            anonymous_files = False
            print("note: no O_TMPFILE on this file system; a killed compile may leave its named temporary file")
        target = os.path.join(p("interrupt"), "model.lathe")
        old = open(p("a.lathe"), "rb").read()
        open(target, "wb").write(old)
        start = time.time()
        rc, _, err = run([lathe, "compile", gguf, "-o", p("full.lathe")])
        full = time.time() - start
        c.expect(rc == 0, f"compile SmolLM2: {err}")
        new_bytes = open(p("full.lathe"), "rb").read()
        for fraction in (0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
            proc = subprocess.Popen([lathe, "compile", gguf, "-o", target], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(full * fraction)
            proc.kill()
            proc.wait()
            now = open(target, "rb").read()
            # A process that finished before the kill has put the whole new artifact in place.
            c.expect(now == old or (proc.returncode == 0 and now == new_bytes),
                     f"compile killed at {fraction:.0%} left a file that is neither the old nor the new artifact")
            if now != old:
                open(target, "wb").write(old)
            left = sorted(f for f in os.listdir(p("interrupt")) if f != "model.lathe")
            if anonymous_files:
                c.expect(not left, f"compile killed at {fraction:.0%} left {left}")
            for f in left:  # the named fallback's temporary file: the user's file is intact either way
                os.remove(os.path.join(p("interrupt"), f))
        rc, _, err = run([lathe, "compile", gguf, "-o", target])
        c.expect(rc == 0 and open(target, "rb").read() == new_bytes,
                 "an uninterrupted compile does not replace the old artifact with the full one")
        # bench and inspect.
        rc, out, err = run([lathe, "bench", p("a.lathe"), "--batch", "2", "--seq", "8", "--iterations", "3"])
        c.expect(rc == 0 and "median" in out and "planned" in out, f"bench: rc={rc} {err}")
        rc, out, err = run([lathe, "bench", p("a.lathe"), "--batch", "2", "--seq", "8", "--iterations", "3", "--profile"])
        rows = {l.split()[0]: l.split() for l in out.splitlines() if l.startswith("  ") and len(l.split()) >= 4}
        c.expect(rc == 0 and "% in kernels" in out and "linear" in rows and "attention" in rows,
                 f"bench --profile: rc={rc} {out[-600:]} {err}")
        _, manifest, _ = run([lathe, "inspect", p("a.lathe")])
        linears = sum(1 for l in manifest.splitlines() if " linear " in l)
        if "linear" in rows:
            c.expect(linears > 0 and float(rows["linear"][2]) == linears,
                     f"bench --profile: {rows['linear'][2]} linear calls per run, the manifest has {linears}")
        rc, out, err = run([lathe, "inspect", p("a.lathe")])
        c.expect(rc == 0 and "format version" in out and "/encoder/layer.0/attention/self/query/MatMul" in out,
                 f"inspect: rc={rc} {err}")
    c.finish()


if __name__ == "__main__":
    main()
