// lathe-synth: writes a .lathe artifact of a named model shape with
// deterministic pseudo-random weights, without the compiler (runtime only), so
// a machine with no models and no MLIR (the GPU machine) can make its own.
//
//   lathe-synth --shape smollm2-135m [--layers N] [--format f32|bf16|int8|int4]
//               [--group-size 128] [--vocab V] [--seed S] [--threads T] -o out.lathe
//   lathe-synth --list
//
// The kernel graph is the one the compiler emits for the real model (the GGUF
// importer's Llama graph, the ONNX importer's BERT graph, after simplify):
// same ops, operand order, attributes and constants, so the runtime and the
// device backends see exactly what they see for compiled models. The compact
// formats quantize the random weights like `lathe-quantize-weights` with RTN
// (int8: symmetric per group, d = max|w|/127; int4: ggml Q4_0, d = m/-8, the
// nibble order of runtime/cpu/IsaKernels.h; bf16: round to nearest even); as
// the compiler does, only linear layers are compressed (embeddings stay f32).
// Weights are N(0, 0.02) (norm weights 1 + N(0, 0.02)), so activations stay finite.
#include "runtime/artifact/ArtifactReader.h"
#include "runtime/artifact/ArtifactSpec.h"
#include "runtime/artifact/Incremental.h"
#include "runtime/core/HalfFloat.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace lathe::artifact;

// ---- Shapes -----------------------------------------------------------------

struct Shape {
  const char *name;
  const char *description;
  bool decoder;        // causal Llama decoder (else a BERT encoder)
  int64_t hidden, layers, heads, kvHeads, ffn, vocab;
  double ropeTheta;    // decoder
  double epsilon;
  bool tiedEmbeddings; // decoder: the LM head reads the token embedding
  int64_t maxPositions; // encoder: learned position table rows
};

const Shape kShapes[] = {
    {"smollm2-135m", "SmolLM2-135M: causal decoder, rms_norm, rotary, SwiGLU, GQA 9/3 heads, tied embeddings", true,
     576, 30, 9, 3, 1536, 49152, 100000.0, 1e-5, true, 0},
    {"llama7b-layer", "Llama-7B decoder layers (default 1): 32 heads of 128, SwiGLU 11008, untied LM head", true,
     4096, 1, 32, 32, 11008, 32000, 10000.0, 1e-5, false, 0},
    {"minilm-l6", "all-MiniLM-L6-v2: BERT encoder, layer_norm, gelu, 12 heads of 32, attention mask, pooler", false,
     384, 6, 12, 12, 1536, 30522, 0.0, 1e-12, false, 512},
};

const Shape *findShape(const std::string &name) {
  for (const Shape &s : kShapes)
    if (name == s.name) return &s;
  return nullptr;
}

struct Options {
  std::string shape, output, format = "f32", json;
  int64_t layers = -1, groupSize = 128, vocab = -1;
  uint64_t seed = 0;
  int threads = 0;
};

// ---- Numbers ----------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hashName(const std::string &s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ splitmix64(seed);
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return splitmix64(h);
}

using lathe::numeric::floatToBf16;
using lathe::numeric::floatToHalf;
using lathe::numeric::halfToFloat;

int gThreads = 1;

template <class F> void parallelFor(int64_t n, int64_t grain, F &&f) {
  const int64_t chunks = (n + grain - 1) / grain;
  const int workers = int(std::min<int64_t>(gThreads, chunks));
  if (workers <= 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int64_t c = w; c < chunks; c += workers) f(c * grain, std::min(n, (c + 1) * grain));
    });
  for (auto &t : pool) t.join();
}

/// N(mean, std) from a counter-based generator: element i depends only on
/// (key, i), so the values do not depend on the thread count.
void fillNormal(float *out, int64_t n, uint64_t key, float mean, float std) {
  const int64_t pairs = (n + 1) / 2;
  parallelFor(pairs, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const uint64_t a = splitmix64(key + 2 * uint64_t(j)), c = splitmix64(key + 2 * uint64_t(j) + 1);
      const double u1 = (double(a >> 11) + 1.0) * 0x1.0p-53, u2 = double(c >> 11) * 0x1.0p-53;
      const double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
      out[2 * j] = float(mean + std * r * std::cos(t));
      if (2 * j + 1 < n) out[2 * j + 1] = float(mean + std * r * std::sin(t));
    }
  });
}

// ---- Artifact building ------------------------------------------------------

using Dims = std::vector<Dim>;
Dim dB() { return Dim{-1, "batch"}; }
Dim dS() { return Dim{-1, "sequence"}; }
Dim dN(int64_t v) { return Dim{v, ""}; }

class Builder {
public:
  ArtifactSpec spec;
  Options options;

  Builder(const Options &o) : options(o) {}

  int32_t tensor(const std::string &name, DType dtype, Dims shape) {
    spec.tensors.push_back(TensorSpec{name, dtype, std::move(shape)});
    weightBytes_.push_back(-1);
    return int32_t(spec.tensors.size() - 1);
  }
  int32_t input(const std::string &name) {
    int32_t t = tensor(name, DType::I64, {dB(), dS()});
    spec.inputs.push_back(t);
    return t;
  }

  /// A constant: bytes are moved into the builder's storage.
  int32_t constant(const std::string &name, DType dtype, const std::vector<int64_t> &shape, std::vector<uint8_t> bytes) {
    Dims dims;
    for (int64_t d : shape) dims.push_back(dN(d));
    int32_t t = tensor(name, dtype, dims);
    storage_.push_back(std::move(bytes));
    spec.weights.push_back(WeightSpec{t, storage_.back().data(), storage_.back().size()});
    weightBytes_[size_t(t)] = int64_t(storage_.back().size());
    return t;
  }
  template <class T> int32_t constantOf(const std::string &name, DType dtype, const std::vector<int64_t> &shape, const std::vector<T> &values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(T));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return constant(name, dtype, shape, std::move(bytes));
  }
  int32_t i64s(const std::string &name, const std::vector<int64_t> &v) { return constantOf(name, DType::I64, {int64_t(v.size())}, v); }
  int32_t i64Scalar(const std::string &name, int64_t v) { return constantOf(name, DType::I64, {}, std::vector<int64_t>{v}); }
  int32_t f32Scalar(const std::string &name, float v) { return constantOf(name, DType::F32, {}, std::vector<float>{v}); }

  /// Random f32 values of `shape` (not yet a constant).
  std::vector<float> random(const std::string &name, int64_t numel, float mean, float std) {
    std::vector<float> v(static_cast<size_t>(numel));
    fillNormal(v.data(), numel, hashName(name, options.seed), mean, std);
    return v;
  }
  int32_t randomConstant(const std::string &name, const std::vector<int64_t> &shape, float mean, float std) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return constantOf(name, DType::F32, shape, random(name, n, mean, std));
  }
  const float *constantData(int32_t t) const {
    for (const WeightSpec &w : spec.weights)
      if (w.tensor == t) return static_cast<const float *>(w.data);
    return nullptr;
  }

  /// Appends a kernel; returns its (single) output tensor, named after the source.
  int32_t kernel(const std::string &op, const std::string &source, std::vector<int32_t> inputs, DType outType, Dims outShape,
                 std::map<std::string, AttrValue> attrs = {}, const std::string &format = "f32", const std::string &outName = "") {
    int32_t out = tensor(outName.empty() ? source : outName, outType, std::move(outShape));
    KernelSpec k;
    k.op = op;
    k.source = source;
    k.inputs = std::move(inputs);
    k.outputs = {out};
    k.attrs = std::move(attrs);
    k.weightFormat = format;
    // The compiler's per-layer manifest: constant operands with more than one
    // element (float ones only for f32 kernels).
    uint64_t bytes = 0;
    for (int32_t i : k.inputs) {
      if (i < 0 || weightBytes_[size_t(i)] < 0) continue;
      const TensorSpec &t = spec.tensors[size_t(i)];
      int64_t numel = 1;
      for (const Dim &d : t.shape) numel *= d.value;
      const bool isFloat = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64;
      if (numel > 1 && (format != "f32" || isFloat)) bytes += uint64_t(weightBytes_[size_t(i)]);
    }
    if (bytes) spec.manifest.push_back(LayerEntry{source, op, format, bytes});
    spec.kernels.push_back(std::move(k));
    return out;
  }

  /// A linear layer y = x W^T + b, W [n, k] random (or `from`: existing f32 values,
  /// e.g. a tied embedding), compressed to the chosen format.
  int32_t linear(const std::string &source, int32_t x, int64_t n, int64_t k, bool bias, const float *from = nullptr,
                 int32_t f32Weight = -1, const std::string &outName = "") {
    Dims out = spec.tensors[size_t(x)].shape;
    out.back() = dN(n);
    int32_t b = bias ? randomConstant(source + ".bias", {n}, 0.0f, 0.02f) : -1;
    const std::string &f = options.format;
    if (f == "f32") {
      int32_t w = f32Weight >= 0 ? f32Weight : randomConstant(source + ".weight", {n, k}, 0.0f, 0.02f);
      return kernel("linear", source, {x, w, b}, DType::F32, out, {}, "f32", outName);
    }
    std::vector<float> owned;
    if (!from) {
      owned = random(source + ".weight", n * k, 0.0f, 0.02f);
      from = owned.data();
    }
    if (f == "bf16") {
      std::vector<uint16_t> q(static_cast<size_t>(n * k));
      parallelFor(n * k, 1 << 16, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) q[size_t(i)] = floatToBf16(from[i]);
      });
      int32_t qt = constantOf(source, DType::BF16, {n, k}, q);
      std::vector<int32_t> ins = {x, qt, b};
      while (ins.back() < 0) ins.pop_back();
      return kernel("linear", source, ins, DType::F32, out, {}, "bf16", outName);
    }
    const int64_t group = options.groupSize > 0 ? std::min(options.groupSize, k) : k;
    const int64_t groups = (k + group - 1) / group;
    const bool int8 = f == "int8";
    std::vector<uint16_t> scales(static_cast<size_t>(n * groups));
    std::vector<uint8_t> codes(size_t(int8 ? n * k : n * k / 2), 0);
    parallelFor(n, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t c0 = g * group, size = std::min(group, k - c0);
          const float *w = from + r * k + c0;
          if (int8) { // d = max|w| / 127, code = round(w / d) in -127..127
            float amax = 0;
            for (int64_t i = 0; i < size; ++i) amax = std::max(amax, std::fabs(w[i]));
            const uint16_t h = floatToHalf(amax / 127.0f);
            const float d = halfToFloat(h);
            scales[size_t(r * groups + g)] = h;
            for (int64_t i = 0; i < size; ++i) {
              int code = d > 0 ? int(std::lround(w[i] / d)) : 0;
              codes[size_t(r * k + c0 + i)] = uint8_t(int8_t(std::clamp(code, -127, 127)));
            }
          } else { // ggml Q4_0: d = m / -8 (m of largest magnitude), ŵ = d (code - 8)
            float extreme = 0;
            for (int64_t i = 0; i < size; ++i)
              if (std::fabs(w[i]) > std::fabs(extreme)) extreme = w[i];
            const uint16_t h = floatToHalf(extreme / -8.0f);
            const float d = halfToFloat(h), mn = -8.0f * d;
            scales[size_t(r * groups + g)] = h;
            for (int64_t i = 0; i < size; ++i) {
              const int code = std::clamp(d != 0 ? int(std::lround((w[i] - mn) / d)) : 8, 0, 15);
              const int64_t col = c0 + i, t = col % 32;
              uint8_t &byte = codes[size_t(r * (k / 2) + (col / 32) * 16 + t % 16)];
              byte = uint8_t(t < 16 ? (byte & 0xF0) | code : (byte & 0x0F) | (code << 4));
            }
          }
        }
    });
    int32_t qt = int8 ? constantOf(source, DType::I8, {n, k}, codes) : constantOf(source, DType::U8, {n, k / 2}, codes);
    int32_t st = constantOf(source, DType::F16, {n, groups}, scales);
    std::vector<int32_t> ins = {x, qt, st};
    if (!int8) ins.push_back(-1); // no mins: symmetric
    ins.push_back(b);
    while (ins.back() < 0) ins.pop_back();
    return kernel("linear", source, ins, DType::F32, out, {{"group_size", int64_t(group)}}, f, outName);
  }

private:
  std::deque<std::vector<uint8_t>> storage_;
  std::vector<int64_t> weightBytes_; // per tensor: its constant's bytes, -1 when not a constant
};

Dims bsh(int64_t h) { return {dB(), dS(), dN(h)}; }
Dims bhsd(int64_t h, int64_t d) { return {dB(), dN(h), dS(), dN(d)}; }
Dims bshd(int64_t h, int64_t d) { return {dB(), dS(), dN(h), dN(d)}; }

/// The attention mask as the importers build it: (1 - mask) * lowest, [batch, 1, 1, sequence].
int32_t additiveMask(Builder &b, int32_t mask, bool twoUnsqueezes, const std::string &src1, const std::string &src2,
                     const std::string &srcCast, const std::string &srcSub, const std::string &srcMul) {
  const Dims m4 = {dB(), dN(1), dN(1), dS()};
  int32_t u;
  if (twoUnsqueezes) {
    int32_t u1 = b.kernel("unsqueeze", src1, {mask}, DType::I64, {dB(), dN(1), dS()}, {{"axes", std::vector<int64_t>{1}}});
    u = b.kernel("unsqueeze", src2, {u1}, DType::I64, m4, {{"axes", std::vector<int64_t>{2}}});
  } else {
    u = b.kernel("unsqueeze", src1, {mask}, DType::I64, m4, {{"axes", std::vector<int64_t>{1, 2}}});
  }
  int32_t c = b.kernel("cast", srcCast, {u}, DType::F32, m4, {{"to", std::string("f32")}});
  int32_t one = b.f32Scalar("const_one", 1.0f);
  int32_t s = b.kernel("sub", srcSub, {one, c}, DType::F32, m4);
  int32_t lowest = b.f32Scalar("const_lowest", std::numeric_limits<float>::lowest());
  return b.kernel("mul", srcMul, {s, lowest}, DType::F32, m4);
}

// The GGUF importer's Llama graph (compiler/import/gguf), after simplify.
void buildDecoder(Builder &b, const Shape &s, int64_t layers, int64_t vocab) {
  const int64_t h = s.hidden, hd = h / s.heads, kvh = s.kvHeads, half = hd / 2;
  int32_t ids = b.input("input_ids");
  int32_t mask = b.input("attention_mask");

  int32_t table = b.randomConstant("token_embd.weight", {vocab, h}, 0.0f, 0.02f);
  int32_t x = b.kernel("embedding", "token_embd", {table, ids}, DType::F32, bsh(h));

  // Rotary tables: cos/sin of positions x inverse frequencies, [sequence, head_dim].
  int32_t pos = b.kernel("positions", "rope", {ids}, DType::I64, {dS()}, {{"axis", int64_t(1)}});
  int32_t posf = b.kernel("cast", "rope", {pos}, DType::F32, {dS()}, {{"to", std::string("f32")}});
  int32_t pos2 = b.kernel("unsqueeze", "rope", {posf}, DType::F32, {dS(), dN(1)}, {{"axes", std::vector<int64_t>{1}}});
  std::vector<float> invFreq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) invFreq[size_t(i)] = float(std::pow(s.ropeTheta, -double(2 * i) / double(hd)));
  int32_t freqs = b.constantOf("rope_freqs", DType::F32, {half}, invFreq);
  int32_t angles = b.kernel("mul", "rope", {pos2, freqs}, DType::F32, {dS(), dN(half)});
  int32_t angles2 = b.kernel("concat", "rope", {angles, angles}, DType::F32, {dS(), dN(hd)}, {{"axis", int64_t(1)}});
  int32_t cosT = b.kernel("cos", "rope", {angles2}, DType::F32, {dS(), dN(hd)});
  int32_t sinT = b.kernel("sin", "rope", {angles2}, DType::F32, {dS(), dN(hd)});

  int32_t maskAdd = additiveMask(b, mask, false, "attention_mask", "", "attention_mask", "attention_mask", "attention_mask");

  int32_t headsShape = b.i64s("const_heads_shape", {0, 0, -1, hd});
  int32_t mergeShape = b.i64s("const_merge_shape", {0, 0, -1});
  const std::map<std::string, AttrValue> perm = {{"perm", std::vector<int64_t>{0, 2, 1, 3}}};

  auto rope = [&](int32_t t, int64_t heads, const std::string &src) {
    return b.kernel("rotary", src, {t, cosT, sinT}, DType::F32, bhsd(heads, hd));
  };
  auto normWeight = [&](const std::string &name) { return b.randomConstant(name + ".weight", {h}, 1.0f, 0.02f); };

  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    int32_t xn = b.kernel("rms_norm", p + "attn_norm", {x, normWeight(p + "attn_norm")}, DType::F32, bsh(h), {{"epsilon", s.epsilon}});
    auto heads = [&](const std::string &name, int64_t n) {
      int32_t y = b.linear(p + name, xn, n * hd, h, false);
      int32_t r = b.kernel("reshape", p + name, {y, headsShape}, DType::F32, bshd(n, hd));
      return b.kernel("transpose", p + name, {r}, DType::F32, bhsd(n, hd), perm);
    };
    int32_t q = heads("attn_q", s.heads), k = heads("attn_k", kvh), v = heads("attn_v", kvh);
    q = rope(q, s.heads, p + "rope_q");
    k = rope(k, kvh, p + "rope_k");
    int32_t att = b.kernel("attention", p + "attention", {q, k, v, maskAdd}, DType::F32, bhsd(s.heads, hd),
                           {{"causal", int64_t(1)}, {"num_heads", s.heads}, {"num_kv_heads", kvh}, {"scale", 1.0 / std::sqrt(double(hd))}});
    int32_t t = b.kernel("transpose", p + "attention", {att}, DType::F32, bshd(s.heads, hd), perm);
    int32_t merged = b.kernel("reshape", p + "attention", {t, mergeShape}, DType::F32, bsh(h));
    int32_t o = b.linear(p + "attn_output", merged, h, h, false);
    x = b.kernel("add", p + "attn_output", {x, o}, DType::F32, bsh(h));
    int32_t fn = b.kernel("rms_norm", p + "ffn_norm", {x, normWeight(p + "ffn_norm")}, DType::F32, bsh(h), {{"epsilon", s.epsilon}});
    int32_t gate = b.linear(p + "ffn_gate", fn, s.ffn, h, false);
    int32_t act = b.kernel("silu", p + "ffn_gate", {gate}, DType::F32, bsh(s.ffn));
    int32_t up = b.linear(p + "ffn_up", fn, s.ffn, h, false);
    int32_t prod = b.kernel("mul", p + "ffn_up", {act, up}, DType::F32, bsh(s.ffn));
    int32_t down = b.linear(p + "ffn_down", prod, h, s.ffn, false);
    x = b.kernel("add", p + "ffn_down", {x, down}, DType::F32, bsh(h));
  }
  int32_t xn = b.kernel("rms_norm", "output_norm", {x, normWeight("output_norm")}, DType::F32, bsh(h), {{"epsilon", s.epsilon}});
  int32_t logits = s.tiedEmbeddings ? b.linear("output", xn, vocab, h, false, b.constantData(table), table, "logits")
                                    : b.linear("output", xn, vocab, h, false, nullptr, -1, "logits");
  b.spec.outputs.push_back(logits);
}

// The ONNX importer's BERT graph (all-MiniLM-L6-v2 exported at opset 17), after simplify.
void buildEncoder(Builder &b, const Shape &s, int64_t layers, int64_t vocab) {
  const int64_t h = s.hidden, hd = h / s.heads, nh = s.heads;
  int32_t ids = b.input("input_ids");
  int32_t mask = b.input("attention_mask");
  int32_t types = b.input("token_type_ids");
  auto ln = [&](int32_t x, const std::string &prefix, const std::string &src, const std::string &outName = "") {
    int32_t w = b.randomConstant(prefix + ".weight", {h}, 1.0f, 0.02f);
    int32_t bias = b.randomConstant(prefix + ".bias", {h}, 0.0f, 0.02f);
    return b.kernel("layer_norm", src, {x, w, bias}, DType::F32, bsh(h), {{"axis", int64_t(-1)}, {"epsilon", s.epsilon}}, "f32", outName);
  };

  int32_t pos = b.kernel("positions", "/embeddings/Slice", {ids}, DType::I64, {dS()}, {{"axis", int64_t(1)}});
  int32_t pos2 = b.kernel("unsqueeze", "/embeddings/Slice", {pos}, DType::I64, {dN(1), dS()}, {{"axes", std::vector<int64_t>{0}}});
  int32_t word = b.randomConstant("embeddings.word_embeddings.weight", {vocab, h}, 0.0f, 0.02f);
  int32_t e = b.kernel("embedding", "/embeddings/word_embeddings/Gather", {word, ids}, DType::F32, bsh(h));
  int32_t typeTable = b.randomConstant("embeddings.token_type_embeddings.weight", {2, h}, 0.0f, 0.02f);
  int32_t te = b.kernel("embedding", "/embeddings/token_type_embeddings/Gather", {typeTable, types}, DType::F32, bsh(h));
  e = b.kernel("add", "/embeddings/Add", {e, te}, DType::F32, bsh(h));
  int32_t posTable = b.randomConstant("embeddings.position_embeddings.weight", {s.maxPositions, h}, 0.0f, 0.02f);
  int32_t pe = b.kernel("embedding", "/embeddings/position_embeddings/Gather", {posTable, pos2}, DType::F32, {dN(1), dS(), dN(h)});
  e = b.kernel("add", "/embeddings/Add_1", {e, pe}, DType::F32, bsh(h));
  int32_t x = ln(e, "embeddings.LayerNorm", "/embeddings/LayerNorm/LayerNormalization");

  int32_t maskAdd = additiveMask(b, mask, true, "/Unsqueeze", "/Unsqueeze_1", "/Cast", "/Sub", "/Mul");
  int32_t headsShape = b.i64s("const_heads_shape", {0, 0, nh, hd});
  int32_t mergeShape = b.i64s("const_merge_shape", {0, 0, h});
  const std::map<std::string, AttrValue> perm = {{"perm", std::vector<int64_t>{0, 2, 1, 3}}};

  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "/encoder/layer." + std::to_string(l) + "/", w = "encoder.layer." + std::to_string(l) + ".";
    auto split = [&](const std::string &name, const std::string &reshapeSrc, const std::string &transposeSrc) {
      int32_t y = b.linear(p + "attention/self/" + name + "/MatMul", x, h, h, true);
      int32_t r = b.kernel("reshape", p + "attention/self/" + reshapeSrc, {y, headsShape}, DType::F32, bshd(nh, hd));
      return b.kernel("transpose", p + "attention/self/" + transposeSrc, {r}, DType::F32, bhsd(nh, hd), perm);
    };
    int32_t q = split("query", "Reshape_2", "Transpose_1");
    int32_t k = split("key", "Reshape", "Transpose_2");
    int32_t v = split("value", "Reshape_1", "Transpose");
    int32_t att = b.kernel("attention", p + "attention/self/Softmax", {q, k, v, maskAdd}, DType::F32, bhsd(nh, hd),
                           {{"causal", int64_t(0)}, {"num_heads", nh}, {"num_kv_heads", nh}, {"scale", 1.0 / std::sqrt(double(hd))}});
    int32_t t = b.kernel("transpose", p + "attention/self/Transpose_3", {att}, DType::F32, bshd(nh, hd), perm);
    int32_t merged = b.kernel("reshape", p + "attention/self/Reshape_3", {t, mergeShape}, DType::F32, bsh(h));
    int32_t o = b.linear(p + "attention/output/dense/MatMul", merged, h, h, true);
    int32_t r1 = b.kernel("add", p + "attention/output/Add", {o, x}, DType::F32, bsh(h));
    int32_t x1 = ln(r1, w + "attention.output.LayerNorm", p + "attention/output/LayerNorm/LayerNormalization");
    int32_t up = b.linear(p + "intermediate/dense/MatMul", x1, s.ffn, h, true);
    int32_t g = b.kernel("gelu", p + "intermediate/intermediate_act_fn/Erf", {up}, DType::F32, bsh(s.ffn), {{"approximate", std::string("none")}});
    int32_t down = b.linear(p + "output/dense/MatMul", g, h, s.ffn, true);
    int32_t r2 = b.kernel("add", p + "output/Add", {down, x1}, DType::F32, bsh(h));
    x = ln(r2, w + "output.LayerNorm", p + "output/LayerNorm/LayerNormalization", l + 1 == layers ? "last_hidden_state" : "");
  }
  int32_t first = b.kernel("gather", "/pooler/Gather", {x, b.i64Scalar("const_first", 0)}, DType::F32, {dB(), dN(h)}, {{"axis", int64_t(1)}});
  int32_t dense = b.linear("/pooler/dense/Gemm", first, h, h, true);
  int32_t pooled = b.kernel("tanh", "/pooler/activation/Tanh", {dense}, DType::F32, {dB(), dN(h)}, {}, "f32", "pooler_output");
  b.spec.outputs = {x, pooled};
}

uint64_t approxParams(const Shape &s, int64_t layers, int64_t vocab) {
  const int64_t h = s.hidden, hd = h / s.heads;
  const int64_t attn = h * s.heads * hd + 2 * h * s.kvHeads * hd + h * h;
  const int64_t mlp = (s.decoder ? 3 : 2) * h * s.ffn;
  const int64_t emb = vocab * h * (s.decoder && !s.tiedEmbeddings ? 2 : 1) + s.maxPositions * h;
  return uint64_t(layers * (attn + mlp) + emb);
}

void usage(FILE *f) {
  std::fprintf(f,
               "Usage: lathe-synth --shape NAME [--layers N] [--format f32|bf16|int8|int4] [--group-size G]\n"
               "                   [--vocab V] [--seed S] [--threads T] [--json info.json] -o out.lathe\n"
               "       lathe-synth --list\n"
               "Writes a .lathe artifact of a named model shape with deterministic random weights\n"
               "(N(0, 0.02); norms 1 + N(0, 0.02)). Compact formats quantize the linear layers\n"
               "(int8/int4 symmetric per group of G input features, default 128; bf16 rounded).\n"
               "--json writes the shape, sizes and the weight bytes one decode step streams.\n");
}

int list() {
  std::printf("%-14s %7s %6s %6s %5s %6s %7s  %s\n", "shape", "hidden", "layers", "heads", "kv", "ffn", "vocab", "description");
  for (const Shape &s : kShapes)
    std::printf("%-14s %7ld %6ld %6ld %5ld %6ld %7ld  %s (~%.1fM parameters)\n", s.name, long(s.hidden), long(s.layers), long(s.heads),
                long(s.kvHeads), long(s.ffn), long(s.vocab), s.description, approxParams(s, s.layers, s.vocab) / 1e6);
  return 0;
}

bool parseInt(const char *text, int64_t &out) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text, &end, 10);
  if (errno || !end || *end || end == text) return false;
  out = v;
  return true;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "lathe-synth: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto integer = [&](int64_t &out) {
      const char *v = value();
      if (!parseInt(v, out)) {
        std::fprintf(stderr, "lathe-synth: %s takes an integer, got '%s'\n", a.c_str(), v);
        std::exit(2);
      }
    };
    int64_t tmp = 0;
    if (a == "--list") return list();
    else if (a == "-h" || a == "--help") { usage(stdout); return 0; }
    else if (a == "--shape") o.shape = value();
    else if (a == "-o" || a == "--output") o.output = value();
    else if (a == "--format") o.format = value();
    else if (a == "--json") o.json = value();
    else if (a == "--layers") integer(o.layers);
    else if (a == "--group-size") integer(o.groupSize);
    else if (a == "--vocab") integer(o.vocab);
    else if (a == "--seed") { integer(tmp); o.seed = uint64_t(tmp); }
    else if (a == "--threads") { integer(tmp); o.threads = int(tmp); }
    else {
      std::fprintf(stderr, "lathe-synth: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  const Shape *shape = findShape(o.shape);
  if (!shape) {
    std::fprintf(stderr, "lathe-synth: %s (see --list)\n", o.shape.empty() ? "--shape is required" : ("unknown shape '" + o.shape + "'").c_str());
    return 2;
  }
  if (o.output.empty()) { std::fprintf(stderr, "lathe-synth: -o out.lathe is required\n"); return 2; }
  if (o.format != "f32" && o.format != "bf16" && o.format != "int8" && o.format != "int4") {
    std::fprintf(stderr, "lathe-synth: unknown format '%s' (f32, bf16, int8, int4)\n", o.format.c_str());
    return 2;
  }
  if (o.layers == 0 || o.layers < -1) { std::fprintf(stderr, "lathe-synth: --layers must be at least 1\n"); return 2; }
  const int64_t layers = o.layers > 0 ? o.layers : shape->layers;
  const int64_t vocab = o.vocab > 0 ? o.vocab : shape->vocab;
  if (o.format == "int4" && (o.groupSize <= 0 || o.groupSize % 32)) {
    std::fprintf(stderr, "lathe-synth: int4 needs a group size that is a positive multiple of 32, got %ld\n", long(o.groupSize));
    return 2;
  }
  if (o.groupSize <= 0) { std::fprintf(stderr, "lathe-synth: --group-size must be positive\n"); return 2; }
  gThreads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());

  const auto t0 = std::chrono::steady_clock::now();
  Builder b(o);
  b.spec.compilerVersion = "lathe-synth 0.1.0";
  b.spec.sourceModel = std::string("synthetic:") + shape->name;
  char pipeline[256];
  std::snprintf(pipeline, sizeof pipeline, "lathe-synth --shape %s --layers %ld --vocab %ld --format %s%s --seed %llu", shape->name,
                long(layers), long(vocab), o.format.c_str(),
                (o.format == "int8" || o.format == "int4") ? (" --group-size " + std::to_string(o.groupSize)).c_str() : "",
                (unsigned long long)o.seed);
  b.spec.pipeline = pipeline;
  b.spec.isa = "baseline";
  if (shape->decoder) buildDecoder(b, *shape, layers, vocab);
  else buildEncoder(b, *shape, layers, vocab);

  if (std::string e = validateSpec(b.spec); !e.empty()) {
    std::fprintf(stderr, "lathe-synth: internal error, the spec is invalid: %s\n", e.c_str());
    return 1;
  }
  std::string incremental = "encoder";
  if (shape->decoder) {
    IncrementalPlan plan = analyzeIncremental(b.spec);
    if (!plan.ok) {
      std::fprintf(stderr, "lathe-synth: internal error, the decoder cannot run incrementally: %s\n", plan.reason.c_str());
      return 1;
    }
    incremental = "incremental (" + std::to_string(plan.attentionKernels.size()) + " KV caches)";
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (std::string e = writeArtifact(b.spec, o.output); !e.empty()) {
    std::fprintf(stderr, "lathe-synth: %s\n", e.c_str());
    return 1;
  }
  const auto t2 = std::chrono::steady_clock::now();
  // What one decode step reads: every weight but the rows of embedding tables
  // (a tied table counts: the LM head reads all of it).
  uint64_t weightBytes = 0, streamedBytes = 0;
  std::vector<char> streamed(b.spec.tensors.size(), 0);
  for (const KernelSpec &k : b.spec.kernels)
    for (size_t i = 0; i < k.inputs.size(); ++i)
      if (k.inputs[i] >= 0 && !(k.op == "embedding" && i == 0)) streamed[size_t(k.inputs[i])] = 1;
  for (const WeightSpec &w : b.spec.weights) {
    weightBytes += w.bytes;
    if (streamed[size_t(w.tensor)]) streamedBytes += w.bytes;
  }
  std::error_code ec;
  const uintmax_t fileBytes = std::filesystem::file_size(o.output, ec);
  const double buildSeconds = std::chrono::duration<double>(t1 - t0).count(), writeSeconds = std::chrono::duration<double>(t2 - t1).count();
  std::printf("lathe-synth: wrote %s: %s, %ld layers, vocab %ld, %s; %zu kernels, %.1f MiB weights (%.1f MiB per decode step), "
              "%.1f MiB file; %s; built in %.2f s, written in %.2f s\n",
              o.output.c_str(), shape->name, long(layers), long(vocab), o.format.c_str(), b.spec.kernels.size(), weightBytes / 1048576.0,
              streamedBytes / 1048576.0, ec ? 0.0 : fileBytes / 1048576.0, incremental.c_str(), buildSeconds, writeSeconds);
  if (!o.json.empty()) {
    FILE *f = std::fopen(o.json.c_str(), "w");
    if (!f) { std::fprintf(stderr, "lathe-synth: cannot write %s\n", o.json.c_str()); return 1; }
    std::fprintf(f,
                 "{\"artifact\": \"%s\", \"shape\": \"%s\", \"decoder\": %s, \"format\": \"%s\", \"group_size\": %ld, \"layers\": %ld, "
                 "\"hidden\": %ld, \"ffn\": %ld, \"heads\": %ld, \"kv_heads\": %ld, \"vocab\": %ld, \"seed\": %llu, \"kernels\": %zu, "
                 "\"file_bytes\": %llu, \"weight_bytes\": %llu, \"streamed_bytes_per_step\": %llu, \"synth_seconds\": %.3f}\n",
                 o.output.c_str(), shape->name, shape->decoder ? "true" : "false", o.format.c_str(),
                 long(o.format == "int8" || o.format == "int4" ? o.groupSize : 0), long(layers), long(shape->hidden), long(shape->ffn),
                 long(shape->heads), long(shape->kvHeads), long(vocab), (unsigned long long)o.seed, b.spec.kernels.size(),
                 (unsigned long long)(ec ? 0 : fileBytes), (unsigned long long)weightBytes, (unsigned long long)streamedBytes,
                 buildSeconds + writeSeconds);
    std::fclose(f);
  }
  return 0;
}
