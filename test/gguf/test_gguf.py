#!/usr/bin/env python3
"""GGUF reader and ggml dequantization (lathe-gguf-dump) against the `gguf` Python package.

a. every claimed ggml type, on tensors quantized by gguf.quants.quantize where it can and on
   random valid blocks byte-wise (all types; fp16 scale fields drawn over every finite half,
   subnormals included), written with GGUFWriter: lathe's dequantization must be bit-exact
   with gguf.quants.dequantize (NaN only where the reference has NaN);
b. the real SmolLM2-135M Q4_1 GGUF: metadata and three tensors (Q8_0, Q4_1, F32) against
   gguf.GGUFReader, bit-exact;
c. malformed files (truncated at every byte of the header, metadata and tensor infos and inside
   the data, bad magic/version, absurd counts and lengths, bad offsets, unknown types): exit
   code 1 and a message naming the problem, never a signal.

Runs under the repo venv (gguf==0.19.0, numpy); re-executes itself there when started by another
interpreter. Exit 77 (skip) when the venv or the model is missing, unless CI=true (then 1).
"""
import argparse
import atexit
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import Checker, reexec_with, skip_or_fail  # noqa: E402



parser = argparse.ArgumentParser()
parser.add_argument("--dump", required=True, help="lathe-gguf-dump")
parser.add_argument("--models", required=True, help="LATHE_MODELS_DIR")
parser.add_argument("--python", default="", help="interpreter with gguf and numpy (the repo venv)")
args = parser.parse_args()

try:
    import gguf  # noqa: F401
    import numpy as np
except ImportError:
    reexec_with(args.python, "LATHE_GGUF_TEST_REEXEC", f"the gguf package is not importable and no venv at {args.python!r}")

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

checker = Checker()
check = checker.expect
failures = checker.failures


def run_dump(*dump_args):
    result = subprocess.run([args.dump, *dump_args], capture_output=True, text=True, errors="replace")
    return result.returncode, result.stdout, result.stderr


WORK = tempfile.mkdtemp(prefix="lathe-gguf-")
atexit.register(shutil.rmtree, WORK, True)
rng = np.random.default_rng(20240604)


def same_bits(actual, expected):
    """Bit-exact float32 equality, with NaN matching NaN (any payload)."""
    if actual.shape != expected.shape or actual.dtype != np.float32:
        return False, f"shape/dtype {actual.shape}/{actual.dtype} vs {expected.shape}/{expected.dtype}"
    a_nan, e_nan = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(a_nan, e_nan):
        return False, f"NaN positions differ ({a_nan.sum()} vs {e_nan.sum()})"
    a_bits = actual.view(np.uint32)[~a_nan]
    e_bits = expected.view(np.uint32)[~e_nan]
    bad = np.flatnonzero(a_bits != e_bits)
    if bad.size:
        i = bad[0]
        return False, (f"{bad.size} of {a_bits.size} values differ in bits; first: lathe "
                       f"{a_bits.view(np.float32)[i]!r} vs gguf {e_bits.view(np.float32)[i]!r}")
    return True, ""


# ---------------------------------------------------------------------------------------------
# a. every claimed type against gguf.quants.dequantize
# ---------------------------------------------------------------------------------------------
# Byte offsets of the fp16 fields (d, dmin/m) inside each block.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]  # gguf 0.19 cannot quantize the K-quants
FLOAT_TYPES = [T.F32, T.F16, T.BF16]
CLAIMED = FLOAT_TYPES + list(HALF_FIELDS)


def random_finite_halves(count):
    """Random fp16 bit patterns over every finite value: normals, subnormals, +-0."""
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint16)
    exponent = (bits >> 10) & 0x1F
    return np.where(exponent == 31, bits & np.uint16(0xBFFF), bits).astype(np.uint16)  # exponent 31 -> 15


def random_blocks(qtype, rows_shape, cols):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(rows_shape)) * (cols // block_size)
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        blocks[:, offset:offset + 2] = random_finite_halves(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(*rows_shape, (cols // block_size) * type_size)


def claimed_type_cases():
    """(name, raw array for GGUFWriter, ggml type)."""
    cases = []
    for qtype in CLAIMED:
        block_size = gguf.GGML_QUANT_SIZES[qtype][0]
        if block_size == 1:
            shapes = [(7,), (3, 5), (2, 3, 4), (4, 1024)]
        elif block_size == 32:
            shapes = [(1, 32), (3, 96), (2, 3, 64), (5, 512)]
        else:
            shapes = [(1, 256), (3, 512), (2, 2, 768)]
        for i, shape in enumerate(shapes):
            name = f"{qtype.name}.{i}"
            values = (rng.standard_normal(shape) * rng.choice([1e-3, 0.1, 4.0, 300.0])).astype(np.float32)
            if qtype == T.F32:
                cases.append((name + ".normal", values, qtype))
                special = rng.integers(0, 1 << 32, size=shape, dtype=np.uint64).astype(np.uint32).view(np.float32)
                cases.append((name + ".bits", np.where(np.isnan(special), np.float32(1.5), special), qtype))
            elif qtype == T.F16:
                cases.append((name + ".normal", values.astype(np.float16), qtype))
                halves = random_finite_halves(int(np.prod(shape))).reshape(shape)
                halves.flat[0] = 0x7C00  # +inf
                cases.append((name + ".bits", halves.view(np.float16), qtype))
            elif qtype == T.BF16:
                cases.append((name + ".normal", quantize(values, qtype), qtype))
                bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
                nan = ((bits >> 7) & 0xFF == 0xFF) & (bits & 0x7F != 0)
                bits = np.where(nan, bits & np.uint16(0xBFFF), bits).astype(np.uint16)
                cases.append((name + ".bits", bits.view(np.uint8).reshape(*shape[:-1], shape[-1] * 2), qtype))
            else:
                if qtype in QUANTIZABLE:
                    cases.append((name + ".quantized", quantize(values, qtype), qtype))
                cases.append((name + ".blocks", random_blocks(qtype, shape[:-1], shape[-1]), qtype))
    return cases


def reference(raw, qtype):
    if qtype == T.F16 and raw.dtype == np.float16:
        return raw.astype(np.float32)
    if qtype == T.F32:
        return raw.astype(np.float32)
    return dequantize(raw, qtype)


def test_claimed_types():
    cases = claimed_type_cases()
    path = os.path.join(WORK, "types.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    for name, raw, qtype in cases:
        if raw.dtype == np.uint8:
            writer.add_tensor(name, raw, raw_dtype=qtype)
        else:
            writer.add_tensor(name, raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    code, listing, err = run_dump(path)
    check(code == 0, f"dump of {path} failed: {err}")
    verified = {}
    for name, raw, qtype in cases:
        out = os.path.join(WORK, "x.npy")
        code, _, err = run_dump(path, "--dequant", name, "--out", out)
        if code != 0:
            check(False, f"{name}: lathe-gguf-dump --dequant exited {code}: {err.strip()}")
            continue
        ok, why = same_bits(np.load(out), reference(raw, qtype))
        check(ok, f"{name} ({qtype.name}): {why}")
        check(f" {qtype.name} " in next((l for l in listing.splitlines() if l.strip().startswith(name + " ")), ""),
              f"{name}: the tensor table does not show type {qtype.name}")
        verified.setdefault(qtype.name, 0)
        verified[qtype.name] += ok
    print("a. bit-exact vs gguf.quants.dequantize (tensors per type):",
          ", ".join(f"{k}={v}" for k, v in verified.items()))
    check(set(verified) == {t.name for t in CLAIMED}, f"not every claimed type was checked: {sorted(verified)}")


def test_unsupported_type():
    path = os.path.join(WORK, "iq.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    block_size, type_size = gguf.GGML_QUANT_SIZES[T.IQ2_XS]
    writer.add_tensor("iq", rng.integers(0, 256, size=(2, type_size), dtype=np.uint8), raw_dtype=T.IQ2_XS)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, out, err = run_dump(path)
    check(code == 0 and "IQ2_XS" in out, f"an IQ2_XS tensor should be listed: {code} {err}")
    code, _, err = run_dump(path, "--dequant", "iq", "--out", os.path.join(WORK, "iq.npy"))
    check(code == 1 and "IQ2_XS (17)" in err, f"dequantizing IQ2_XS should fail naming 'IQ2_XS (17)': {code} {err}")
    code, _, err = run_dump(path, "--dequant", "nope", "--out", os.path.join(WORK, "iq.npy"))
    check(code == 1 and "no tensor named 'nope'" in err, f"missing tensor: {code} {err}")


# ---------------------------------------------------------------------------------------------
# Hand-built files: every metadata value type, nested arrays, and the malformed variants.
# ---------------------------------------------------------------------------------------------
def gguf_string(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_value(vtype, value):
    if vtype == 8:
        return gguf_string(value)
    if vtype == 9:
        element_type, elements = value
        return struct.pack("<IQ", element_type, len(elements)) + b"".join(gguf_value(element_type, e) for e in elements)
    return struct.pack(SCALAR[vtype], value)


def build_gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, vtype, value)]; tensors: [(name, ne, type, offset, data bytes)].
    Returns (bytes, marks) where marks are the section boundaries for truncation."""
    out = struct.pack("<4sIQQ", b"GGUF", version, len(tensors), len(kvs))
    marks = {"header": len(out)}
    for key, vtype, value in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    marks["metadata"] = len(out)
    for name, ne, ttype, offset, _ in tensors:
        out += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ttype, offset)
    marks["tensor_infos"] = len(out)
    out += b"\0" * ((-len(out)) % alignment)
    marks["data"] = len(out)
    data = b""
    for _, _, _, offset, blob in tensors:
        if blob:  # tensors without bytes are the ones whose offset is meant to be wrong
            data += b"\0" * (offset - len(data)) + blob
    return out + data, marks


ALL_KVS = [
    ("general.architecture", 8, "llama"),
    ("u8", 0, 200), ("i8", 1, -100), ("u16", 2, 60000), ("i16", 3, -30000), ("u32", 4, 4000000000),
    ("i32", 5, -2000000000), ("f32", 6, 0.5), ("flag", 7, True), ("u64", 10, 2**63 + 5), ("i64", 11, -2**62),
    ("f64", 12, 0.125), ("words", 9, (8, ["alpha", "beta", "", "gamma", "delta", "eps"])),
    ("nested", 9, (9, [(4, [1, 2, 3]), (4, [4]), (4, [])])),
    ("general.alignment", 4, 64),
]


def valid_file():
    w = np.arange(64, dtype=np.float32)
    q = quantize(rng.standard_normal((2, 64)).astype(np.float32), T.Q8_0).tobytes()
    return build_gguf(ALL_KVS, [("w", [64], 0, 0, w.tobytes()), ("q", [64, 2], 8, 256, q)], alignment=64)


def write(name, data):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_handbuilt_valid():
    data, _ = valid_file()
    path = write("valid.gguf", data)
    # The builder itself is checked by gguf's own reader.
    reader = gguf.GGUFReader(path)
    check(reader.fields["nested"].types[:2] == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.ARRAY]
          and set(k for k, _, _ in ALL_KVS) <= set(reader.fields),
          "gguf.GGUFReader does not read the hand-built nested array")
    code, out, err = run_dump(path)
    check(code == 0, f"valid hand-built file rejected: {err}")
    for expected in ["u8 ", "200", "-100", "60000", "-30000", "4000000000", "-2000000000", "0.5", "true",
                     str(2**63 + 5), str(-2**62), "0.125", '[6 x string] {"alpha", "beta", "", "gamma", "delta", ...}',
                     "array[array[uint32]]", "[3 x array[uint32]] {[3 x uint32] {1, 2, 3}, [1 x uint32] {4}, [0 x uint32]}",
                     "alignment: 64"]:
        check(expected in out, f"hand-built dump lacks {expected!r}")
    npy = os.path.join(WORK, "q.npy")
    code, _, err = run_dump(path, "--dequant", "q", "--out", npy)
    ok, why = same_bits(np.load(npy), dequantize(np.asarray(reader.get_tensor(1).data), T.Q8_0)) if code == 0 else (False, err)
    check(ok, f"hand-built Q8_0 tensor: {why}")


def expect_error(name, data, *substrings):
    path = write(name + ".gguf", data)
    code, _, err = run_dump(path)
    if code < 0:
        check(False, f"{name}: killed by signal {-code}")
        return
    check(code == 1, f"{name}: exit code {code}, expected 1 ({err.strip()})")
    for s in substrings:
        check(s in err, f"{name}: message lacks {s!r}: {err.strip()}")


def test_malformed():
    data, marks = valid_file()
    # Truncated at every byte up to the data section, and at a few points inside the data.
    cut_points = list(range(0, marks["data"])) + [marks["data"] + k for k in (1, 100, 300)] + [len(data) - 1]
    for cut in cut_points:
        section = next(s for s in ("header", "metadata", "tensor_infos", "data") if cut < marks[s] or s == "data")
        want = "outside the file" if cut >= marks["tensor_infos"] else "truncated"
        if 24 <= cut < marks["metadata"]:
            want = ("cannot fit", "truncated")  # the counts are checked against the size before the entries
        want = (want,) if isinstance(want, str) else want
        path = write("cut.gguf", data[:cut])
        code, _, err = run_dump(path)
        ok = code == 1 and any(w in err for w in want)
        if not ok:
            check(False, f"truncated at byte {cut} ({section}): exit {code}: {err.strip()}")
        else:
            check(True, "")
    # Messages say where: section contexts.
    expect_error("cut_header", data[:10], "truncated", "the tensor count")
    expect_error("cut_metadata", data[:marks["metadata"] - 5], "metadata entry 14 'general.alignment'", "truncated")
    expect_error("cut_tensor_infos", data[:marks["metadata"] + 5], "tensor info 0", "truncated")
    expect_error("cut_tensor_dims", data[:marks["metadata"] + 10], "tensor 'w'", "the dimension count", "truncated")
    expect_error("cut_data", data[:marks["data"] + 100], "tensor 'q'", "lies outside the file")

    expect_error("bad_magic", b"GGML" + data[4:], "not a GGUF file", "'GGML'")
    expect_error("version1", data[:4] + struct.pack("<I", 1) + data[8:], "version 1")
    expect_error("version99", data[:4] + struct.pack("<I", 99) + data[8:], "unsupported GGUF version 99")
    expect_error("big_endian", data[:4] + struct.pack(">I", 3) + data[8:], "big-endian")
    expect_error("empty", b"", "truncated", "the magic")
    expect_error("huge_tensor_count", data[:8] + struct.pack("<Q", 2**62) + data[16:], "tensor count", "cannot fit")
    expect_error("huge_kv_count", data[:16] + struct.pack("<Q", 2**63) + data[24:], "metadata count", "cannot fit")

    def variant(kvs=ALL_KVS, tensors=None, alignment=64):
        if tensors is None:
            tensors = [("w", [64], 0, 0, np.zeros(64, np.float32).tobytes())]
        return build_gguf(kvs, tensors, alignment=alignment)[0]

    huge_key = struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + struct.pack("<Q", 2**60) + b"abc" * 10
    expect_error("huge_key_length", huge_key, "metadata entry 0", "the key has length 1152921504606846976")
    huge_string = struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + gguf_string("name") + struct.pack("<IQ", 8, 2**40) + b"x"
    expect_error("huge_string_length", huge_string, "metadata entry 0 'name'", "a string value has length")
    huge_array = struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + gguf_string("arr") + struct.pack("<IIQ", 9, 6, 2**61)
    expect_error("huge_array_count", huge_array, "metadata entry 0 'arr'", "array of float32 claims 2305843009213693952 elements")
    deep = (4, [1])
    for _ in range(12):
        deep = (9, [deep])
    expect_error("deep_array", variant(kvs=[("deep", 9, deep)]), "nest deeper")
    bad_vtype = struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + gguf_string("k") + struct.pack("<I", 13) + b"\0" * 16
    expect_error("unknown_value_type", bad_vtype, "metadata entry 0 'k'", "value type 13")
    expect_error("unknown_element_type", struct.pack("<4sIQQ", b"GGUF", 3, 0, 1) + gguf_string("k") +
                 struct.pack("<IIQ", 9, 77, 1) + b"\0" * 16, "array element type 77")
    expect_error("duplicate_key", variant(kvs=[("a", 4, 1), ("a", 4, 2)]), "'a'", "duplicate metadata key")
    expect_error("bad_bool", variant(kvs=[("b", 7, 1)]).replace(gguf_string("b") + struct.pack("<IB", 7, 1),
                 gguf_string("b") + struct.pack("<IB", 7, 2)), "bool value is 2")
    expect_error("bad_alignment", variant(kvs=[("general.alignment", 4, 48)], alignment=48), "general.alignment is 48")
    expect_error("alignment_type", variant(kvs=[("general.alignment", 8, "32")], alignment=32),
                 "general.alignment has type string")

    block = quantize(np.ones((1, 32), np.float32), T.Q8_0).tobytes()
    expect_error("offset_past_end", variant(tensors=[("blk.0.attn_q.weight", [32], 8, 0, block),
                                                    ("far", [32], 8, 1 << 40, b"")]),
                 "tensor 'far'", "lies outside the file", str(1 << 40))
    expect_error("offset_overflow", variant(tensors=[("big", [32], 8, 2**64 - 64, b"")]), "tensor 'big'", "outside the file")
    expect_error("size_past_end", variant(tensors=[("t", [32, 1000], 8, 0, block)]), "tensor 't'", "lies outside the file")
    expect_error("misaligned_offset", variant(tensors=[("t", [32], 8, 8, b"\0" * 8 + block)]), "not a multiple of the alignment")
    expect_error("unknown_ggml_type", variant(tensors=[("t", [32], 99, 0, block)]), "tensor 't'", "unknown ggml type 99")
    expect_error("removed_ggml_type", variant(tensors=[("t", [32], 4, 0, block)]), "unknown ggml type 4")
    expect_error("bad_row_length", variant(tensors=[("t", [33], 8, 0, block)]), "ne[0]=33", "Q8_0 block size 32")
    expect_error("too_many_dims", variant(tensors=[("t", [1, 1, 1, 1, 32], 0, 0, block)]), "5 dimensions")
    expect_error("dims_overflow", variant(tensors=[("t", [2**40, 2**40], 0, 0, block)]), "more elements than int64")
    expect_error("duplicate_tensor", variant(tensors=[("t", [8], 0, 0, b"\0" * 32), ("t", [8], 0, 32, b"\0" * 32)]),
                 "duplicate tensor name")
    # Several bad tensors: all of them are reported.
    expect_error("many_bad", variant(tensors=[("t1", [32], 99, 0, block), ("t2", [32], 8, 1 << 40, b"")]),
                 "2 tensor problems", "'t1'", "'t2'")
    # Random byte flips: any outcome but a signal or a hang.
    for trial in range(200):
        mutated = bytearray(data)
        for _ in range(rng.integers(1, 6)):
            mutated[rng.integers(0, marks["data"])] = rng.integers(0, 256)
        path = write("flip.gguf", bytes(mutated))
        code, _, err = run_dump(path)
        check(code in (0, 1), f"byte flip trial {trial}: exit {code}: {err.strip()[:300]}")
    print(f"c. malformed files: {len(cut_points)} truncations, named errors, 200 random byte flips")


# ---------------------------------------------------------------------------------------------
# b. the real SmolLM2 file
# ---------------------------------------------------------------------------------------------
def test_smollm2(path):
    code, out, err = run_dump(path)
    check(code == 0, f"SmolLM2 dump failed: {err}")
    meta = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and line.startswith("  ") and "." in parts[0]:
            meta[parts[0]] = parts[2]
    reader = gguf.GGUFReader(path)

    def field(key):
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        if f.types[0] == gguf.GGUFValueType.STRING:
            return bytes(value).decode()
        return value[0].item()

    expected = {
        "general.architecture": '"llama"',
        "llama.block_count": str(field("llama.block_count")),
        "llama.attention.head_count": str(field("llama.attention.head_count")),
        "llama.attention.head_count_kv": str(field("llama.attention.head_count_kv")),
        "llama.embedding_length": str(field("llama.embedding_length")),
        "llama.rope.freq_base": "%.9g" % field("llama.rope.freq_base"),
        "tokenizer.ggml.pre": '"' + field("tokenizer.ggml.pre") + '"',
    }
    check(field("general.architecture") == "llama", "gguf says the architecture is not llama")
    for key, want in expected.items():
        got = meta.get(key, "<missing>").split(None, 1)[-1]
        check(got == want, f"SmolLM2 {key}: lathe {got!r}, gguf {want!r}")
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    check(f"[{n_vocab} x string]" in meta.get("tokenizer.ggml.tokens", ""), "SmolLM2 vocabulary size differs")
    print("b. SmolLM2 metadata:", {k: meta.get(k, "").split(None, 1)[-1] for k in expected}, "vocab", n_vocab)

    tensors = {t.name: t for t in reader.tensors}
    for name, qtype in (("token_embd.weight", T.Q8_0), ("blk.0.attn_q.weight", T.Q4_1),
                        ("blk.7.ffn_down.weight", T.Q4_1), ("output_norm.weight", T.F32)):
        t = tensors[name]
        check(t.tensor_type == qtype, f"{name}: gguf says {t.tensor_type.name}, test expected {qtype.name}")
        npy = os.path.join(WORK, "smol.npy")
        code, _, err = run_dump(path, "--dequant", name, "--out", npy)
        if code != 0:
            check(False, f"{name}: dequant failed: {err}")
            continue
        want = dequantize(np.asarray(t.data), t.tensor_type).reshape(tuple(reversed([int(d) for d in t.shape])))
        ok, why = same_bits(np.load(npy), want)
        check(ok, f"SmolLM2 {name} ({qtype.name}): {why}")
        if ok:
            print(f"b. SmolLM2 {name} ({qtype.name}, {want.shape}): bit-exact")


test_claimed_types()
test_unsupported_type()
test_handbuilt_valid()
test_malformed()
model = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
have_model = os.path.exists(model)
if have_model:
    test_smollm2(model)

print(f"{checker.checks - len(failures)} of {checker.checks} checks passed")
if failures:
    sys.exit(1)
if not have_model:
    skip_or_fail(f"the SmolLM2 GGUF is missing at {model} (run scripts/models/prepare.sh)")
