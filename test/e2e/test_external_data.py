"""External data: weights load from a side file (also beyond 2 GiB, 64-bit
offsets), a location escaping the model's folder or absolute is refused, and
the weights reach the bytecode output intact."""
import os
import struct
import tempfile

from lathe_test_util import Checker, parse_args, run


def main():
    args = parse_args()
    c = Checker()
    d = os.path.join(args.models, "external_data")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ["small/ext_small.opset17.onnx", "large_offset/ext_large_offset.opset17.onnx"]:
            path = os.path.join(d, case)
            out = os.path.join(tmp, os.path.basename(case) + ".mlirbc")
            rc, _, err = run([args.lathe, "compile", path, "--compile-to=import", "-o", out])
            c.expect(rc == 0, f"{case}: import failed: {err}")
            if rc == 0:
                c.expect(os.path.getsize(out) > 1000, f"{case}: bytecode has no weights ({os.path.getsize(out)} bytes)")
        big = os.path.join(d, "large_offset", "ext_large_offset.bin")
        c.expect(os.path.getsize(big) > 2 ** 31, "large-offset data file is not > 2 GiB")
        # The weight bytes at the far offset must be what the bytecode carries.
        path = os.path.join(d, "large_offset/ext_large_offset.opset17.onnx")
        out = os.path.join(tmp, "large.mlirbc")
        run([args.lathe, "compile", path, "--compile-to=import", "-o", out])
        import json
        info = json.load(open(os.path.join(d, "info.json")))
        entry = [f for f in info["files"] if f.get("case") == "large_offset"][0]
        offset = entry.get("external_offset")
        if offset is not None and os.path.exists(out):
            with open(big, "rb") as f:
                f.seek(offset)
                head = f.read(64)
            c.expect(head in open(out, "rb").read(), "weight bytes from offset > 2 GiB not found in the bytecode")
        for case, needle in [("escape/ext_escape.opset17.onnx", "escapes the model's folder"),
                             ("escape/ext_escape_abs.opset17.onnx", "absolute")]:
            rc, _, err = run([args.lathe, "compile", os.path.join(d, case), "--compile-to=import",
                              "-o", os.path.join(tmp, "x.mlir")])
            c.expect(rc == 1 and needle in err, f"{case}: rc={rc}, expected refusal with '{needle}': {err}")
            c.expect(not os.path.exists(os.path.join(tmp, "x.mlir")), f"{case}: partial output written")
    c.finish()


if __name__ == "__main__":
    main()
