// The CUDA linear kernels' per-thread math (runtime/cuda/LinearMath.h), run on
// the host: the f16/bf16 conversions bit for bit against the CPU's cast
// kernel, and the GEMV of every compact format emulated exactly as the device
// runs it (for each warp: lanePartial / scalarPartial / nmPartial for the 32
// lanes, then the xor-butterfly of reduceLanes, then finishOutput), plus the
// dense dequantization of the many-rows path, compared with the CPU kernel
// (lathe::cpu::findKernel(..., "cpu")) on the same operands.
// Tolerance per output: 1e-5 · Σ|x·w| (+ |bias|) + 1e-6, Σ|x·w| in double
// from the dense dequantized weight (a wrong index, nibble or scale is off by
// the order of Σ|x·w| itself).
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/SparseNm.h"
#include "runtime/cuda/LinearMath.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace lathe;
namespace m = lathe::cuda::math;
using artifact::DType;

namespace {

/// Runs one CPU kernel (shape, then run) on host views.
std::string runCpu(const std::string &op, const std::string &format, std::map<std::string, artifact::AttrValue> attrs,
                   std::vector<cpu::View> &inputs, const std::vector<bool> &present, cpu::View &out, std::vector<float> &outData) {
  static core::ThreadPool pool(1);
  std::string error;
  static const cpu::IsaTable *isa = cpu::selectIsa("", error);
  const cpu::KernelEntry *entry = cpu::findKernel(op, format, "cpu");
  if (!entry) return "no CPU kernel " + op + "/" + format;
  artifact::KernelSpec spec;
  spec.op = op, spec.weightFormat = format, spec.attrs = std::move(attrs), spec.source = "test";
  for (size_t i = 0; i < inputs.size(); ++i) spec.inputs.push_back(present[i] ? int32_t(i) : -1);
  spec.outputs = {int32_t(inputs.size())};
  cpu::KernelContext c;
  c.spec = &spec;
  for (size_t i = 0; i < inputs.size(); ++i) c.inputs.push_back(present[i] ? &inputs[i] : nullptr);
  c.outputs = {&out};
  c.pool = &pool;
  c.isa = isa;
  if (auto e = entry->shape(c); !e.empty()) return e;
  outData.assign(size_t(out.numel()), 0.0f);
  out.data = outData.data();
  return entry->run(c);
}

uint32_t floatBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

uint16_t randomHalf(std::mt19937 &rng, int minExp, int maxExp, bool sign) {
  const int e = minExp + int(rng() % uint32_t(maxExp - minExp + 1));
  return uint16_t((sign && (rng() & 1) ? 0x8000 : 0) | e << 10 | int(rng() % 1024));
}

/// One compact-weight problem in the artifact layout, and what the emulation needs.
struct Problem {
  std::string format;
  int64_t m = 0, n = 0, k = 0, group = 0;
  int pattern = 4;
  bool mins = false, bias = false;
  std::vector<float> x, biasData;
  std::vector<uint8_t> q, indices;
  std::vector<float> values; // nm-f32
  std::vector<uint16_t> scales, minData;
};

Problem makeProblem(const std::string &format, int64_t m, int64_t n, int64_t k, int64_t group, bool mins, bool bias, uint32_t seed,
                    int pattern = 4) {
  Problem p;
  p.format = format, p.m = m, p.n = n, p.k = k, p.group = group, p.mins = mins, p.bias = bias, p.pattern = pattern;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  p.x.resize(size_t(m * k));
  for (auto &v : p.x) v = uni(rng);
  p.biasData.resize(size_t(n));
  for (auto &v : p.biasData) v = uni(rng);
  const int64_t groups = group > 0 ? (k + group - 1) / group : 1;
  auto randomBytes = [&](size_t count) {
    p.q.resize(count);
    for (auto &b : p.q) b = uint8_t(rng());
  };
  if (format == "int8") randomBytes(size_t(n * k));
  else if (format == "int4") randomBytes(size_t(n * k / 2));
  else if (format == "int3") randomBytes(size_t(n * k / 32 * 12));
  else if (format == "bf16") {
    p.q.resize(size_t(n * k * 2));
    for (int64_t i = 0; i < n * k; ++i) {
      const uint16_t h = uint16_t(floatBits(uni(rng)) >> 16);
      std::memcpy(&p.q[size_t(2 * i)], &h, 2);
    }
  } else if (format == "fp16") { // every third weight at half's limits: ±65504, subnormals
    static const uint16_t limits[] = {0x7BFF, 0xFBFF, 0x0001, 0x83FF, 0x0400};
    p.q.resize(size_t(n * k * 2));
    for (int64_t i = 0; i < n * k; ++i) {
      const uint16_t h = i % 3 ? numeric::floatToHalf(uni(rng)) : limits[rng() % 5];
      std::memcpy(&p.q[size_t(2 * i)], &h, 2);
    }
  } else { // nm-f32, nm-int4: random N:M masks packed by the CPU's own packers
    std::vector<uint8_t> keep(size_t(n * k), 0);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t g = 0; g < k / pattern; ++g) {
        int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        std::shuffle(order, order + pattern, rng);
        for (int i = 0; i < pattern / 2; ++i) keep[size_t(r * k + g * pattern + order[i])] = 1;
      }
    p.indices.resize(size_t(n * cpu::nmIndexBytesPerRow(k, pattern)));
    std::string error;
    if (format == "nm-f32") {
      std::vector<float> w(size_t(n * k));
      for (auto &v : w) v = uni(rng);
      p.values.resize(size_t(n * k / 2));
      error = cpu::nmPackF32(w.data(), keep.data(), n, k, pattern, p.values.data(), p.indices.data());
    } else {
      std::vector<int32_t> kept(size_t(n * k / 2));
      for (auto &v : kept) v = int32_t(rng() % 16);
      p.q.resize(size_t(n * k / 4));
      error = cpu::nmPackInt4(kept.data(), keep.data(), n, k, pattern, p.q.data(), p.indices.data());
    }
    REQUIRE(error.empty());
  }
  if (format == "int8" || format == "int4" || format == "int3" || format == "nm-int4") {
    for (int64_t i = 0; i < n * groups; ++i) p.scales.push_back(randomHalf(rng, 8, 12, false)); // 2^-7 .. 2^-3
    if (mins)
      for (int64_t i = 0; i < n * groups; ++i) p.minData.push_back(randomHalf(rng, 10, 15, true));
  }
  return p;
}

/// The CPU kernel's output for p.
std::vector<float> cpuOutput(const Problem &p) {
  std::vector<cpu::View> in;
  std::vector<bool> present;
  auto add = [&](DType t, std::vector<int64_t> shape, const void *data, bool there = true) {
    in.push_back(cpu::View{t, std::move(shape), const_cast<void *>(data)});
    present.push_back(there);
  };
  const int64_t groups = p.group > 0 ? (p.k + p.group - 1) / p.group : 1;
  std::map<std::string, artifact::AttrValue> attrs;
  add(DType::F32, {p.m, p.k}, p.x.data());
  if (p.format == "int8" || p.format == "int4" || p.format == "int3") {
    const int64_t cols = p.format == "int8" ? p.k : p.format == "int4" ? p.k / 2 : p.k / 32 * 12;
    add(p.format == "int8" ? DType::I8 : DType::U8, {p.n, cols}, p.q.data());
    add(DType::F16, {p.n, groups}, p.scales.data());
    if (p.format != "int8") add(DType::F16, {p.n, groups}, p.minData.data(), p.mins);
    attrs["group_size"] = p.group;
  } else if (p.format == "bf16" || p.format == "fp16") {
    add(p.format == "bf16" ? DType::BF16 : DType::F16, {p.n, p.k}, p.q.data());
  } else {
    const bool int4 = p.format == "nm-int4";
    if (int4) add(DType::U8, {p.n, p.k / 4}, p.q.data());
    else add(DType::F32, {p.n, p.k / 2}, p.values.data());
    add(DType::U8, {p.n, cpu::nmIndexBytesPerRow(p.k, p.pattern)}, p.indices.data());
    if (int4) add(DType::F16, {p.n, groups}, p.scales.data()), attrs["group_size"] = p.group;
    attrs["pattern"] = std::string(p.pattern == 4 ? "2:4" : "4:8");
    attrs["in_features"] = p.k;
  }
  add(DType::F32, {p.n}, p.biasData.data(), p.bias);
  cpu::View out{DType::F32, {}, nullptr};
  std::vector<float> y;
  const std::string error = runCpu("linear", p.format, attrs, in, present, out, y);
  INFO(error);
  REQUIRE(error.empty());
  REQUIRE(out.shape == std::vector<int64_t>{p.m, p.n});
  return y;
}

/// LinearArgs over p's host buffers, as runQuantLinear / runNmLinear bind them.
m::LinearArgs argsOf(const Problem &p, float *y) {
  m::LinearArgs a;
  a.n = p.n, a.k = p.k, a.m = p.m;
  a.x = p.x.data(), a.y = y, a.ldx = p.k, a.ldy = p.n;
  a.bias = p.bias ? p.biasData.data() : nullptr;
  a.group = p.format == "bf16" || p.format == "fp16" ? p.k : p.group;
  a.groups = (p.k + a.group - 1) / a.group;
  a.scales = p.scales.empty() ? nullptr : p.scales.data();
  a.mins = p.mins ? p.minData.data() : nullptr;
  a.xAligned = 1;
  a.pattern = p.pattern;
  if (p.format == "nm-f32") a.q = reinterpret_cast<const uint8_t *>(p.values.data()), a.rowBytes = p.k / 2 * 4;
  else a.q = p.q.data();
  if (p.format == "int8") a.rowBytes = p.k;
  if (p.format == "int4") a.rowBytes = p.k / 2;
  if (p.format == "int3") a.rowBytes = p.k / 32 * 12;
  if (p.format == "bf16" || p.format == "fp16") a.rowBytes = 2 * p.k;
  if (p.format == "nm-int4") a.rowBytes = p.k / 4;
  a.indices = p.indices.empty() ? nullptr : p.indices.data();
  return a;
}

enum class Path { Chunked, Scalar, Nm };

/// The device GEMV of one (format, MAXM) emulated: every warp, every lane, the butterfly, the store.
template <int F, int MAXM, Path P> void emulateGemv(const m::LinearArgs &a) {
  constexpr int R = m::WarpRows<MAXM>::value;
  for (int64_t row0 = 0; row0 < a.n; row0 += R) {
    float partial[32][R][MAXM];
    for (int lane = 0; lane < 32; ++lane) {
      if constexpr (P == Path::Chunked) m::lanePartial<F, MAXM, R, true>(a, row0, lane, partial[lane]);
      else if constexpr (P == Path::Scalar) m::scalarPartial<F, MAXM, R>(a, row0, lane, partial[lane]);
      else m::nmPartial<F == m::kNmInt4, MAXM, R, true>(a, row0, lane, partial[lane]);
    }
    for (int i = 0; i < MAXM && i < a.m; ++i)
      for (int r = 0; r < R; ++r) {
        float lanes[32];
        for (int l = 0; l < 32; ++l) lanes[l] = partial[l][r][i];
        const float sum = m::reduceLanes(lanes);
        if (row0 + r < a.n) a.y[i * a.ldy + row0 + r] = m::finishOutput(a, row0 + r, sum);
      }
  }
}
template <int F, Path P> void emulateGemvRows(const m::LinearArgs &a) {
  // The launcher's choice of MAXM (LinearKernels.cu launchGemv).
  if (a.m <= 1) emulateGemv<F, 1, P>(a);
  else if (a.m <= 2) emulateGemv<F, 2, P>(a);
  else if (a.m <= 4) emulateGemv<F, 4, P>(a);
  else emulateGemv<F, 8, P>(a);
}

/// The dense dequantization of the many-rows path (denseKernel's per-thread work).
template <int F, Path P> std::vector<float> emulateDense(const m::LinearArgs &a) {
  std::vector<float> w(size_t(a.n * a.k), -12345.0f);
  for (int64_t row = 0; row < a.n; ++row) {
    if constexpr (P == Path::Scalar) {
      for (int64_t j = 0; j < a.k; ++j) w[size_t(row * a.k + j)] = m::dequantOne<F>(a, row, j);
    } else if constexpr (P == Path::Nm) {
      for (int64_t c = 0; c < a.k / 32; ++c) m::nmDense<F == m::kNmInt4, true>(a, row, c, &w[size_t(row * a.k + 32 * c)]);
    } else {
      constexpr int CH = m::Chunk<F>::weights;
      for (int64_t c = 0; c < a.k / CH; ++c) {
        float out[CH];
        m::denseChunk<F, true>(a, row, c, out);
        std::memcpy(&w[size_t(row * a.k + c * CH)], out, sizeof out);
      }
    }
  }
  return w;
}

struct Emulated {
  std::vector<float> gemv, dense; // GEMV output [m, n]; dense weight [n, k]
  Path path;
};

template <int F> Emulated emulate(const Problem &p) {
  Emulated e;
  e.gemv.assign(size_t(p.m * p.n), NAN);
  m::LinearArgs a = argsOf(p, e.gemv.data());
  if constexpr (F == m::kNmF32 || F == m::kNmInt4) {
    e.path = Path::Nm;
    emulateGemvRows<F, Path::Nm>(a);
    e.dense = emulateDense<F, Path::Nm>(a);
  } else {
    const bool chunked = m::chunked<F>(a);
    if constexpr (F == m::kInt8 || F == m::kBf16 || F == m::kF16) {
      if (!chunked) {
        e.path = Path::Scalar;
        emulateGemvRows<F, Path::Scalar>(a);
        e.dense = emulateDense<F, Path::Scalar>(a);
        return e;
      }
    }
    REQUIRE(chunked);
    e.path = Path::Chunked;
    emulateGemvRows<F, Path::Chunked>(a);
    e.dense = emulateDense<F, Path::Chunked>(a);
  }
  return e;
}

Emulated emulateAny(const Problem &p) {
  if (p.format == "int8") return emulate<m::kInt8>(p);
  if (p.format == "int4") return emulate<m::kInt4>(p);
  if (p.format == "int3") return emulate<m::kInt3>(p);
  if (p.format == "bf16") return emulate<m::kBf16>(p);
  if (p.format == "fp16") return emulate<m::kF16>(p);
  if (p.format == "nm-f32") return emulate<m::kNmF32>(p);
  return emulate<m::kNmInt4>(p);
}

/// Checks the emulated GEMV and (dense weight · x) against the CPU kernel.
void checkProblem(const Problem &p, Path expected) {
  const std::vector<float> ref = cpuOutput(p);
  const Emulated e = emulateAny(p);
  REQUIRE(e.path == expected);
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) {
      double scale = p.bias ? std::fabs(p.biasData[size_t(j)]) : 0.0, dense = p.bias ? p.biasData[size_t(j)] : 0.0;
      for (int64_t t = 0; t < p.k; ++t) {
        const double prod = double(p.x[size_t(i * p.k + t)]) * e.dense[size_t(j * p.k + t)];
        scale += std::fabs(prod), dense += prod;
      }
      const double tol = 1e-5 * scale + 1e-6, want = ref[size_t(i * p.n + j)];
      const float got = e.gemv[size_t(i * p.n + j)];
      INFO("row " << i << " output " << j << ": GEMV " << got << ", dense " << dense << ", CPU " << want << ", tolerance " << tol);
      REQUIRE(std::isfinite(want));
      REQUIRE(std::fabs(double(got) - want) <= tol);
      REQUIRE(std::fabs(dense - want) <= tol);
    }
}

} // namespace

TEST_CASE("CUDA f16/bf16 conversions match the CPU's for all 65536 patterns", "[cuda-math]") {
  for (DType type : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> bits(65536);
    for (int i = 0; i < 65536; ++i) bits[size_t(i)] = uint16_t(i);
    std::vector<cpu::View> in{cpu::View{type, {65536}, bits.data()}};
    cpu::View out{DType::F32, {}, nullptr};
    std::vector<float> y;
    const std::string error = runCpu("cast", "f32", {}, in, {true}, out, y);
    INFO(error);
    REQUIRE(error.empty());
    int mismatches = 0;
    for (int i = 0; i < 65536; ++i) {
      const float mine = type == DType::F16 ? m::halfToFloat(uint16_t(i)) : m::bf16ToFloat(uint16_t(i));
      const float cpu = y[size_t(i)];
      if (std::isnan(cpu)) {
        if (!std::isnan(mine)) ++mismatches; // NaN payloads may differ, NaN-ness may not
        continue;
      }
      if (floatBits(mine) != floatBits(cpu)) {
        if (mismatches++ < 5) WARN(artifact::dtypeName(type) << " bits " << i << ": " << mine << " vs CPU " << cpu);
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("CUDA byte-permute code conversion is exact", "[cuda-math]") {
  for (uint32_t v = 0; v < 256; ++v)
    for (int b = 0; b < 4; ++b) {
      const uint32_t word = (v << (8 * b)) | (0xA5A5A5A5u & ~(0xFFu << (8 * b))); // other bytes are noise
      REQUIRE(m::byteToFloat(word, b, 0.0f) == float(v));
      REQUIRE(m::byteToFloat(word ^ 0x80808080u, b, 128.0f) == float(int8_t(uint8_t(v)))); // int8 decoding's bias
    }
  // The selector semantics of __byte_perm: byte i of the result is byte s_i of (y:x).
  REQUIRE(m::bytePerm(0x33221100u, 0x77665544u, 0x7540u) == 0x77554400u);
  REQUIRE(m::bytePerm(0x33221100u, 0x77665544u, 0x0123u) == 0x00112233u);
  // int8 decoding: codes -128..127 in every byte position.
  for (int v = -128; v < 128; ++v) {
    uint32_t w[4];
    for (int i = 0; i < 4; ++i) w[i] = uint32_t(uint8_t(int8_t(v))) * 0x01010101u;
    float q[16];
    m::decodeChunk<m::kInt8>(w, q);
    for (float f : q) REQUIRE(f == float(v));
  }
}

TEST_CASE("CUDA butterfly reduction sums all 32 lanes in the xor order", "[cuda-math]") {
  float v[32];
  for (int l = 0; l < 32; ++l) v[l] = float(1 << (l % 20)) + float(l);
  double want = 0;
  for (float f : v) want += f;
  REQUIRE(double(m::reduceLanes(v)) == want); // exact: every partial sum is an integer below 2^24
  // Order: ((v0 + v16) + (v8 + v24)) + ... : a large value cancelled by its xor-16 partner first.
  for (int l = 0; l < 32; ++l) v[l] = 0.0f;
  v[0] = 1e8f, v[16] = -1e8f, v[1] = 1.0f;
  REQUIRE(m::reduceLanes(v) == 1.0f); // (1e8 + 1) first would round the 1 away
}

TEST_CASE("CUDA compact GEMV emulation matches the CPU linear (int8, int4, int3, bf16, fp16)", "[cuda-math]") {
  struct Case { std::string format; int64_t k, group; bool mins; Path path; };
  const std::vector<Case> cases = {
      {"int8", 64, 32, false, Path::Chunked},    {"int8", 1056, 128, false, Path::Chunked}, // 66 chunks: lanes 0,1 take 3
      {"int8", 48, 48, false, Path::Chunked},    {"int8", 100, 100, false, Path::Scalar},   // k not a multiple of 16
      {"int8", 96, 40, false, Path::Scalar},     {"int8", 37, 37, false, Path::Scalar},     // group not a multiple of 16, odd k
      {"int4", 64, 32, false, Path::Chunked},    {"int4", 64, 32, true, Path::Chunked},
      {"int4", 2112, 64, true, Path::Chunked},   {"int4", 160, 64, false, Path::Chunked},   // k not a multiple of the group
      {"int4", 4160, 4160, false, Path::Chunked},
      {"int3", 64, 32, false, Path::Chunked},    {"int3", 96, 64, true, Path::Chunked},
      {"int3", 2112, 128, true, Path::Chunked},  {"int3", 2080, 2080, false, Path::Chunked},
      {"bf16", 40, 0, false, Path::Chunked},     {"bf16", 1000, 0, false, Path::Chunked},
      {"bf16", 37, 0, false, Path::Scalar},      {"bf16", 12, 0, false, Path::Scalar},
      {"fp16", 40, 0, false, Path::Chunked},     {"fp16", 1000, 0, false, Path::Chunked},
      {"fp16", 37, 0, false, Path::Scalar},      {"fp16", 12, 0, false, Path::Scalar}};
  uint32_t seed = 1;
  for (const Case &cs : cases)
    for (int64_t rows : {1, 2, 3, 5, 8})
      for (int64_t n : {1, 37}) {
        const bool bias = (seed & 1) != 0;
        INFO(cs.format << " k " << cs.k << " group " << cs.group << (cs.mins ? " mins" : "") << " m " << rows << " n " << n
                       << (bias ? " bias" : ""));
        checkProblem(makeProblem(cs.format, rows, n, cs.k, cs.group, cs.mins, bias, seed++), cs.path);
      }
}

TEST_CASE("CUDA N:M GEMV emulation matches the CPU linear (nm-f32, nm-int4)", "[cuda-math]") {
  uint32_t seed = 100;
  for (const char *format : {"nm-f32", "nm-int4"})
    for (int pattern : {4, 8})
      for (auto [k, group] : std::vector<std::pair<int64_t, int64_t>>{{64, 32}, {2080, 64}, {96, 64}})
        for (int64_t rows : {1, 2, 5, 8})
          for (int64_t n : {1, 19}) {
            const bool bias = (seed & 1) != 0;
            INFO(format << " pattern " << pattern << " k " << k << " group " << group << " m " << rows << " n " << n);
            checkProblem(makeProblem(format, rows, n, k, group, false, bias, seed++, pattern), Path::Nm);
          }
}

TEST_CASE("CUDA tensor-core GEMM inputs: activations rounded to bf16/half, half saturating", "[cuda-math]") {
  using lathe::cuda::math::activationTo16;
  using lathe::numeric::bf16ToFloat;
  using lathe::numeric::halfToFloat;
  // Round to nearest even, as the weights were stored.
  CHECK(activationTo16(1.0f, true) == 0x3F80);
  CHECK(bf16ToFloat(activationTo16(1.00390625f, true)) == 1.0f);     // halfway to the next bf16: to even
  CHECK(bf16ToFloat(activationTo16(1.01171875f, true)) == 1.015625f); // halfway, rounds up to even
  CHECK(halfToFloat(activationTo16(0.1f, false)) == halfToFloat(lathe::numeric::floatToHalf(0.1f)));
  // Beyond half's range: saturated, not infinite; bf16 keeps the magnitude; NaN stays NaN.
  CHECK(halfToFloat(activationTo16(1e6f, false)) == 65504.0f);
  CHECK(halfToFloat(activationTo16(-1e6f, false)) == -65504.0f);
  CHECK(halfToFloat(activationTo16(INFINITY, false)) == 65504.0f);
  CHECK(bf16ToFloat(activationTo16(1e6f, true)) == 999424.0f);
  CHECK(std::isnan(halfToFloat(activationTo16(NAN, false))));
  CHECK(std::isnan(bf16ToFloat(activationTo16(NAN, true))));
  // Relative rounding error within half an ulp of each type.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-100.0f, 100.0f);
  for (int i = 0; i < 10000; ++i) {
    const float v = u(rng);
    CHECK(std::fabs(bf16ToFloat(activationTo16(v, true)) - v) <= std::fabs(v) * 0x1p-8f);
    CHECK(std::fabs(halfToFloat(activationTo16(v, false)) - v) <= std::fabs(v) * 0x1p-11f + 0x1p-25f);
  }
}

TEST_CASE("CUDA int8 activations: blocks quantized and widened as the CPU's widenActRows, bit for bit", "[cuda-math]") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (int64_t k : {32, 96, 70, 5}) {
    const int64_t rows = 3;
    std::vector<float> x(size_t(rows * k));
    for (auto &v : x) v = u(rng);
    if (k >= 64) {
      for (int64_t i = 32; i < 64; ++i) x[size_t(i)] = 0.0f; // an all-zero block (d = 0)
      x[size_t(k + 40)] = INFINITY;                          // a block with an infinity: NaN outputs
      x[size_t(2 * k + 3)] = NAN;
      x[size_t(2 * k + 33)] = 1e30f; // one huge value: the rest of its block rounds to 0
    }
    std::vector<float> dev(x.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t s = 0; s < k; s += 32) m::widenActBlock(&x[size_t(r * k + s)], std::min<int64_t>(32, k - s), &dev[size_t(r * k + s)]);
    for (const std::string &name : cpu::supportedIsas()) {
      DYNAMIC_SECTION(name << " k=" << k) {
        const cpu::IsaTable *isa = cpu::isaByName(name);
        REQUIRE(isa);
        std::vector<float> ref(x.size());
        isa->widenActRows(x.data(), k, rows, k, ref.data());
        for (size_t i = 0; i < x.size(); ++i) {
          INFO("element " << i << " x=" << x[i] << " cpu " << ref[i] << " cuda " << dev[i]);
          REQUIRE((std::isnan(ref[i]) ? std::isnan(dev[i]) : std::memcmp(&ref[i], &dev[i], 4) == 0));
        }
      }
    }
  }
}

TEST_CASE("CUDA W8A8: device quantization, dp4a products and epilogue give the CPU tables' bits", "[cuda-math]") {
  // (m, n, k): k a multiple of 16 (the 16-byte path) and not; decode rows and more.
  for (auto [m, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 33, 64}, {3, 17, 70}, {9, 8, 48}, {2, 5, 7}}) {
    for (int mode = 0; mode < 3; ++mode) { // dynamic, static per tensor, static per channel
      DYNAMIC_SECTION("m=" << m << " n=" << n << " k=" << k << " mode " << mode) {
        std::mt19937 rng(uint32_t(m * 1000 + n * 10 + k + mode));
        std::uniform_real_distribution<float> uni(-2.0f, 2.0f);
        std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n)), inv(static_cast<size_t>(k));
        for (auto &v : x) v = uni(rng);
        for (auto &v : bias) v = uni(rng);
        for (auto &v : inv) v = 40.0f + 20.0f * uni(rng);
        if (m > 1) for (int64_t i = 0; i < k; ++i) x[size_t(k + i)] = 0.0f; // a zero row
        std::vector<int8_t> q(static_cast<size_t>(n * k));
        for (auto &b : q) b = int8_t(int(rng() % 255) - 127);
        std::vector<uint16_t> scales(static_cast<size_t>(n));
        for (auto &s : scales) s = lathe::numeric::floatToHalf(0.001f + 0.01f * std::fabs(uni(rng)));
        const float tensorScale = mode == 0 ? 0.0f : 0.02f;
        std::map<std::string, artifact::AttrValue> attrs;
        if (mode) attrs["act_scale"] = double(tensorScale);
        std::vector<cpu::View> in = {{DType::F32, {m, k}, x.data()}, {DType::I8, {n, k}, q.data()}, {DType::F16, {n, 1}, scales.data()},
                                     {DType::F32, {k}, inv.data()}, {DType::F32, {n}, bias.data()}};
        cpu::View out{DType::F32, {}, nullptr};
        std::vector<float> ref;
        REQUIRE(runCpu("linear", "w8a8", attrs, in, {true, true, true, mode == 2, true}, out, ref) == "");
        // The device kernels' steps (w8a8QuantizeKernel, w8a8GemvKernel) on the host.
        const int64_t kp = (k + 15) / 16 * 16;
        std::vector<int8_t> xq(size_t(m * kp), 0);
        std::vector<float> rowScale(static_cast<size_t>(m));
        for (int64_t r = 0; r < m; ++r) {
          float amax = 0.0f;
          if (tensorScale <= 0.0f)
            for (int64_t i = 0; i < k; ++i) amax = std::fabs(x[size_t(r * k + i)]) > amax ? std::fabs(x[size_t(r * k + i)]) : amax;
          const float rinv = m::w8a8RowInverse(amax, tensorScale, rowScale[size_t(r)]);
          for (int64_t i = 0; i < k; ++i) xq[size_t(r * kp + i)] = m::w8a8Code(x[size_t(r * k + i)], mode == 2 ? inv[size_t(i)] : rinv);
        }
        std::vector<float> dev(size_t(m * n));
        for (int64_t r = 0; r < m; ++r)
          for (int64_t j = 0; j < n; ++j) {
            int32_t acc = 0;
            if (k % 16 == 0) {
              for (int64_t w = 0; w < k / 4; ++w) {
                uint32_t a, b;
                std::memcpy(&a, &q[size_t(j * k + 4 * w)], 4);
                std::memcpy(&b, &xq[size_t(r * kp + 4 * w)], 4);
                acc = m::dot4(a, b, acc);
              }
            } else {
              for (int64_t i = 0; i < k; ++i) acc += int32_t(q[size_t(j * k + i)]) * int32_t(xq[size_t(r * kp + i)]);
            }
            dev[size_t(r * n + j)] = m::w8a8Output(acc, rowScale[size_t(r)], lathe::numeric::halfToFloat(scales[size_t(j)]), bias.data(), j);
          }
        REQUIRE(ref.size() == dev.size());
        for (size_t i = 0; i < dev.size(); ++i) {
          INFO("output " << i << ": cpu " << ref[i] << ", cuda " << dev[i]);
          REQUIRE(std::memcmp(&ref[i], &dev[i], 4) == 0);
        }
      }
    }
  }
}

TEST_CASE("CUDA bitmap-f32: row starts, lane offsets and words give the CPU kernel's product", "[cuda-math]") {
  // k up to 1056 (33 words: a second pass of the lanes), densities from empty rows to full ones.
  for (auto [m, n, k, density] : std::vector<std::tuple<int64_t, int64_t, int64_t, double>>{
           {1, 9, 64, 0.5}, {3, 7, 1056, 0.3}, {8, 5, 96, 0.9}, {2, 4, 32, 0.0}, {4, 6, 1024 + 32, 1.0}}) {
    DYNAMIC_SECTION("m=" << m << " n=" << n << " k=" << k << " density " << density) {
      std::mt19937 rng(uint32_t(n * 100 + k));
      std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
      std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n));
      std::vector<uint8_t> keep(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        w[i] = uni(rng);
        keep[i] = std::fabs(uni(rng)) < density || (density >= 1.0);
      }
      for (int64_t c = 0; c < k; ++c) keep[size_t(2 * k + c)] = n > 2 && density > 0 ? 0 : keep[size_t(2 * k + c)]; // an empty row
      for (auto &v : x) v = uni(rng);
      for (auto &v : bias) v = uni(rng);
      int64_t nnz = 0;
      std::vector<uint8_t> masks(static_cast<size_t>(n * k / 8));
      REQUIRE(cpu::bitmapPack(w.data(), keep.data(), n, k, nullptr, masks.data(), &nnz) == "");
      std::vector<float> values(static_cast<size_t>(std::max<int64_t>(nnz, 1)));
      REQUIRE(cpu::bitmapPack(w.data(), keep.data(), n, k, values.data(), masks.data(), &nnz) == "");
      std::map<std::string, artifact::AttrValue> attrs = {{"in_features", k}};
      std::vector<cpu::View> in = {{DType::F32, {m, k}, x.data()}, {DType::F32, {nnz}, values.data()}, {DType::U8, {n, k / 8}, masks.data()},
                                   {DType::F32, {n}, bias.data()}};
      cpu::View out{DType::F32, {}, nullptr};
      std::vector<float> ref;
      REQUIRE(runCpu("linear", "bitmap-f32", attrs, in, {true, true, true, true}, out, ref) == "");
      // Row starts (bitmapRowCountKernel + exclusiveScanKernel).
      std::vector<int64_t> starts(static_cast<size_t>(n));
      int64_t run = 0;
      for (int64_t j = 0; j < n; ++j) {
        starts[size_t(j)] = run;
        for (int64_t wd = 0; wd < k / 32; ++wd) run += m::popcount32(m::bitmapMaskWord(masks.data(), j, wd, k));
      }
      REQUIRE(run == nnz);
      // bitmapGemvKernel<8> and bitmapDenseKernel, lane by lane.
      const int64_t words = k / 32;
      std::vector<float> dense(w.size(), -1.0f);
      for (int64_t j = 0; j < n; ++j) {
        float acc[32][8] = {};
        const float *vals = values.data() + starts[size_t(j)];
        for (int64_t base = 0; base < words; base += 32) {
          int counts[32], offset = 0;
          uint32_t mask[32];
          for (int l = 0; l < 32; ++l) {
            mask[l] = base + l < words ? m::bitmapMaskWord(masks.data(), j, base + l, k) : 0u;
            counts[l] = m::popcount32(mask[l]);
          }
          for (int l = 0; l < 32; ++l) {
            if (mask[l]) m::bitmapWord<8>(mask[l], vals + offset, x.data(), k, m, 32 * (base + l), acc[l]);
            if (base + l < words) m::bitmapDenseWord(mask[l], vals + offset, &dense[size_t(j * k + 32 * (base + l))]);
            offset += counts[l];
          }
          vals += offset;
        }
        for (int64_t r = 0; r < m; ++r) {
          float partial[32];
          for (int l = 0; l < 32; ++l) partial[l] = acc[l][r];
          const float got = m::reduceLanes(partial) + bias[size_t(j)];
          const float want = ref[size_t(r * n + j)];
          INFO("row " << r << " output " << j << ": cpu " << want << ", cuda " << got);
          REQUIRE(std::fabs(got - want) <= 1e-5f * (1.0f + std::fabs(want)));
        }
      }
      for (size_t i = 0; i < w.size(); ++i) {
        INFO("dense weight " << i);
        REQUIRE(dense[i] == (keep[i] ? w[i] : 0.0f));
      }
    }
  }
}
