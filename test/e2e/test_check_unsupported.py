"""`lathe check` lists every unsupported node with its name, op and reason at
once (exit 1), and a fully supported model in one line (exit 0)."""
import glob
import os

from lathe_test_util import Checker, parse_args, run


def names(path):
    return [l.strip() for l in open(path) if l.strip() and not l.startswith("#")]


def main():
    args = parse_args()
    c = Checker()
    d = os.path.join(args.models, "unsupported")
    model = glob.glob(os.path.join(d, "*.onnx"))[0]
    rc, out, err = run([args.lathe, "check", model])
    print(out, err)
    c.expect(rc == 1, f"check exit code {rc}, expected 1")
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    for n in names(os.path.join(d, "expected_unsupported.txt")):
        c.expect(n in rows, f"unsupported node {n} not listed")
        if n in rows:
            c.expect(len(rows[n].split()) >= 4, f"row for {n} has no reason: {rows[n]}")
    for n in names(os.path.join(d, "expected_supported.txt")):
        c.expect(n not in rows, f"supported node {n} listed as unsupported")

    ok = glob.glob(os.path.join(args.models, "generated", "bert-tiny", "*.opset17.onnx"))[0]
    rc, out, err = run([args.lathe, "check", ok])
    c.expect(rc == 0 and "are supported" in out and len(out.strip().splitlines()) == 1,
             f"supported model: rc={rc} out={out!r}")
    rc, out, err = run([args.lathe, "check", os.path.join(d, "does-not-exist.onnx")])
    c.expect(rc == 1 and "cannot open" in err, f"missing file: rc={rc} err={err!r}")
    garbage = os.path.join(args.models, "garbage.onnx")
    with open(garbage, "wb") as f:
        f.write(b"\x08\x07not a protobuf\xff\xff\xff")
    rc, out, err = run([args.lathe, "check", garbage])
    c.expect(rc == 1 and "not a valid ONNX model" in err, f"garbage file: rc={rc} err={err!r}")
    os.unlink(garbage)
    c.finish()


if __name__ == "__main__":
    main()
