#!/usr/bin/env python3
"""Turns a CUDA source (.cu) into C++ for the CUDA emulator (CudaEmu.h):

  kernel<T, 4><<<grid, block, shared, stream>>>(a, b)
      -> ::emu::launch("kernel<T, 4>", reinterpret_cast<const void *>(&kernel<T, 4>),
                       ::emu::LaunchConfig(grid, block, shared, stream), [](auto... a_) { kernel<T, 4>(a_...); }, a, b)
     (the lambda lets template arguments be deduced from the arguments, as nvcc does;
      the address is nullptr for a template launched without template arguments)
  extern __shared__ float smem[];
      -> float *smem = static_cast<float *>(::emu::dynamicShared());
  __shared__ T a[4], b;   (then CudaEmu.h makes __shared__ `static`)
      -> __shared__ T a[4], b; ::emu::sharedDeclared(&a, sizeof(a)); ::emu::sharedDeclared(&b, sizeof(b));

The line structure is kept (a #line directive first), so compiler errors and
the emulator's messages point at the .cu file.

Usage: rewrite_launches.py IN.cu OUT.cpp
Fails (exit 1, naming the line) on a launch or shared declaration it cannot parse.
"""
import os
import re
import sys

def kernel_start(text, end):
    """Start index of the kernel expression that ends at `end` (just before <<<):
    an identifier, optionally followed by balanced template arguments."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: walk back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            c = text[i]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
                if depth == 0:
                    break
        else:
            return None
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def split_top(s, sep=","):
    """Splits s at `sep` outside parentheses, brackets, braces and angle brackets."""
    out, depth, cur = [], 0, ""
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
    out.append(cur)
    return out


def line_of(text, index):
    return text.count("\n", 0, index) + 1


def rewrite_launches(text, path):
    templates = set(re.findall(
        r"template\s*<[^;{]*?>\s*__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(", text))
    out, pos = [], 0
    while True:
        open_ = text.find("<<<", pos)
        if open_ < 0:
            out.append(text[pos:])
            return "".join(out)
        close = text.find(">>>", open_)
        start = kernel_start(text, open_)
        paren = close + 3
        while paren < len(text) and text[paren].isspace():
            paren += 1
        if close < 0 or start is None or start == open_ or paren >= len(text) or text[paren] != "(":
            sys.exit(f"{path}:{line_of(text, open_)}: cannot parse this kernel launch")
        kernel = text[start:open_].strip()
        config = text[open_ + 3:close]
        # No argument list after the launch: no comma before the (absent) arguments.
        after = paren + 1
        while after < len(text) and text[after] in " \t":
            after += 1
        comma = "" if text[after] == ")" else ", "
        # Newlines inside the launch stay newlines, so later lines keep their numbers.
        config_text = config.replace("\n", " ")
        out.append(text[pos:start])
        address = "nullptr" if kernel in templates else f"reinterpret_cast<const void *>(&{kernel})"
        out.append(f'::emu::launch("{kernel}", {address}, ::emu::LaunchConfig({config_text}), '
                   f'[](auto... a_) {{ {kernel}(a_...); }}{comma}')
        out.append("\n" * config.count("\n"))
        pos = paren + 1


EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?P<type>[^;\[]+?)\s+(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;")
SHARED = re.compile(r"(?<!extern )__shared__\s+(?P<decl>[^;]+);")


def rewrite_shared(text, path):
    text = EXTERN_SHARED.sub(
        lambda m: f"{m.group('type')} *{m.group('name')} = static_cast<{m.group('type')} *>(::emu::dynamicShared());", text)

    def one(m):
        decl = m.group("decl")
        # "T a[4], b[N]" -> type "T", declarators "a[4]", "b[N]"
        first = re.match(r"(?P<type>.*?)\s*(?P<name>[A-Za-z_]\w*)\s*(\[[^\]]*\])*\s*$", split_top(decl)[0])
        if not first:
            sys.exit(f"{path}:{line_of(text, m.start())}: cannot parse this __shared__ declaration")
        names = [first.group("name")]
        for d in split_top(decl)[1:]:
            n = re.match(r"\s*([A-Za-z_]\w*)", d)
            if not n:
                sys.exit(f"{path}:{line_of(text, m.start())}: cannot parse this __shared__ declaration")
            names.append(n.group(1))
        marks = " ".join(f"::emu::sharedDeclared(&{n}, sizeof({n}));" for n in names)
        return f"__shared__ {decl}; {marks}"

    return SHARED.sub(one, text)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    text = rewrite_shared(rewrite_launches(text, src), src)
    with open(dst + ".tmp", "w") as f:
        f.write(f'#line 1 "{src}"\n' + text)
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
