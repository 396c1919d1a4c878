"""The PyTorch peer for #10's decode target: SmolLM2-135M's architecture
(random weights, transformers' LlamaForCausalLM, eager attention) decoding
greedily through its KV cache at batch 1. Prints the same "decode N tokens in
X s: Y tokens/s" line as `lathe generate`, so scripts/bench/gpu.sh reads both
the same way. Runs on the GPU machine's PyTorch; --device cpu works anywhere
torch and transformers are installed.

  python3 scripts/bench/torch_decode.py --device cuda --dtype fp16 --tokens 128
"""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=8)
    ap.add_argument("--layers", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, rms_norm_eps=1e-5,
                         rope_theta=100000.0, tie_word_embeddings=True)
    config._attn_implementation = "eager"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    model = LlamaForCausalLM(config).to(device=args.device, dtype=dtype).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    ids = torch.arange(1, args.prompt + 1, device=args.device).unsqueeze(0)
    with torch.inference_mode():
        for attempt in range(2):  # the first pass warms up kernels and allocator
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            sync()
            t1 = time.perf_counter()
            for _ in range(args.tokens - 1):
                out = model(input_ids=token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            sync()
            t2 = time.perf_counter()
    steps = args.tokens - 1
    print(f"torch {torch.__version__}, {args.device} {args.dtype}, eager attention, {args.layers} layers")
    print(f"prefill  {args.prompt} tokens in {t1 - t0:.3f} s: {args.prompt / (t1 - t0):.1f} tokens/s")
    print(f"decode   {steps} tokens in {t2 - t1:.3f} s: {steps / (t2 - t1):.1f} tokens/s ({1000 * (t2 - t1) / steps:.2f} ms/token)")


if __name__ == "__main__":
    main()
