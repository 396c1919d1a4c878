// The N:M sparse tables (SparseNm.h) against a naive reference computed in
// double from the DENSE masked weight (int4: the codes dequantized with their
// scales), at every level this CPU supports. Tolerance: 1e-5 of Σ|x·w| (bias
// included) per element. Splitting [0, n) must not change a single bit.
#include "runtime/cpu/SparseNm.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace lathe;
using cpu::NmArgs;
using cpu::NmTable;

namespace {

// The tables this CPU can run; a warning names each one it cannot.
std::vector<const NmTable *> tables() {
  std::vector<const NmTable *> out;
  for (const char *level : {"baseline", "avx2", "avx512"}) {
    if (const NmTable *t = cpu::nmTableFor(level)) out.push_back(t);
    else WARN("skipping the N:M table " << level << ": this CPU cannot run it");
  }
  return out;
}

struct Problem {
  int64_t m = 0, n = 0, k = 0, lda = 0, ldc = 0, group = 0;
  int pattern = 4;
  bool int4 = false, hasBias = false;
  std::vector<float> x;          // [m, lda]
  std::vector<uint8_t> keep;     // [n, k]
  std::vector<double> dense;     // [n, k]: the masked weight as the reference sees it
  std::vector<float> bias;       // [n]
  // The packed operands.
  std::vector<float> values;
  std::vector<uint8_t> codes, indices;
  std::vector<uint16_t> scales;
};

// A half with exponent e (biased) and mantissa bits `mantissa`, and its value.
uint16_t makeHalf(int e, int mantissa) { return uint16_t(e << 10 | mantissa); }
double halfValue(uint16_t h) { return std::ldexp(1.0 + (h & 0x3FF) / 1024.0, ((h >> 10) & 0x1F) - 15); }

Problem makeProblem(int64_t m, int64_t n, int64_t k, int pattern, bool int4, int64_t group, bool hasBias, uint32_t seed) {
  Problem p;
  p.m = m, p.n = n, p.k = k, p.pattern = pattern, p.int4 = int4, p.group = group, p.hasBias = hasBias;
  p.lda = k + 7, p.ldc = n + 5;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  p.x.resize(size_t(m * p.lda));
  for (auto &v : p.x) v = uni(rng);
  p.keep.assign(size_t(n * k), 0);
  const int keptPerGroup = pattern / 2;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t g = 0; g < k / pattern; ++g) {
      int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
      std::shuffle(order, order + pattern, rng);
      for (int i = 0; i < keptPerGroup; ++i) p.keep[size_t(r * k + g * pattern + order[i])] = 1;
    }
  p.dense.assign(size_t(n * k), 0.0);
  p.indices.resize(size_t(n * cpu::nmIndexBytesPerRow(k, pattern)));
  std::string error;
  if (!int4) {
    std::vector<float> w(size_t(n * k));
    for (auto &v : w) v = uni(rng);
    for (size_t i = 0; i < w.size(); ++i) p.dense[i] = p.keep[i] ? double(w[i]) : 0.0;
    p.values.resize(size_t(n * k / 2));
    error = cpu::nmPackF32(w.data(), p.keep.data(), n, k, pattern, p.values.data(), p.indices.data());
  } else {
    const int64_t groups = (k + group - 1) / group;
    p.scales.resize(size_t(n * groups));
    for (auto &s : p.scales) s = makeHalf(8 + int(rng() % 4), int(rng() % 1024)); // about 2^-7 .. 2^-3
    std::vector<int32_t> kept(size_t(n * k / 2));
    for (auto &q : kept) q = int32_t(rng() % 16);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0, t = 0; c < k; ++c)
        if (p.keep[size_t(r * k + c)])
          p.dense[size_t(r * k + c)] = halfValue(p.scales[size_t(r * groups + c / group)]) * (kept[size_t(r * k / 2 + t++)] - 8);
    p.codes.resize(size_t(n * k / 4));
    error = cpu::nmPackInt4(kept.data(), p.keep.data(), n, k, pattern, p.codes.data(), p.indices.data());
  }
  REQUIRE(error == "");
  if (hasBias) {
    p.bias.resize(size_t(n));
    for (auto &b : p.bias) b = uni(rng);
  }
  return p;
}

NmArgs argsFor(const Problem &p, float *c) {
  NmArgs a;
  std::memset(&a, 0, sizeof a);
  a.n = p.n, a.k = p.k, a.m = p.m, a.pattern = p.pattern;
  a.values = p.int4 ? nullptr : p.values.data();
  a.codes = p.int4 ? p.codes.data() : nullptr;
  a.scales = p.int4 ? p.scales.data() : nullptr;
  a.group = p.group;
  a.indices = p.indices.data();
  a.x = p.x.data(), a.lda = p.lda;
  a.c = c, a.ldc = p.ldc;
  a.bias = p.hasBias ? p.bias.data() : nullptr;
  return a;
}

constexpr float kSentinel = -12345.0f; // padding between rows of C must stay untouched

void check(const NmTable *t, const Problem &p) {
  INFO("table " << t->name << ", " << (p.pattern == 4 ? "2:4" : "4:8") << (p.int4 ? " int4 group " + std::to_string(p.group) : " f32")
                << ", m " << p.m << " n " << p.n << " k " << p.k << (p.hasBias ? ", bias" : ""));
  std::vector<float> whole(size_t(p.m * p.ldc), kSentinel), split(size_t(p.m * p.ldc), kSentinel);
  NmArgs a = argsFor(p, whole.data());
  t->gemm(&a, 0, p.n);
  // Two uneven ranges on a panel boundary, the second computed first.
  const int64_t pw = t->panelWidth, cut = std::min(p.n, pw * std::max<int64_t>(1, p.n / pw / 3));
  NmArgs b = argsFor(p, split.data());
  t->gemm(&b, cut, p.n);
  t->gemm(&b, 0, cut);
  int64_t bad = 0, unsplit = 0;
  for (int64_t r = 0; r < p.m; ++r) {
    for (int64_t j = 0; j < p.n; ++j) {
      double ref = p.hasBias ? p.bias[size_t(j)] : 0.0, magnitude = p.hasBias ? std::fabs(p.bias[size_t(j)]) : 0.0;
      for (int64_t c = 0; c < p.k; ++c) {
        const double term = double(p.x[size_t(r * p.lda + c)]) * p.dense[size_t(j * p.k + c)];
        ref += term;
        magnitude += std::fabs(term);
      }
      const float got = whole[size_t(r * p.ldc + j)];
      if (!(std::fabs(got - ref) <= 1e-5 * magnitude + 1e-30)) {
        if (bad++ < 5) UNSCOPED_INFO("row " << r << " col " << j << ": got " << got << ", expected " << ref << " (Σ|x·w| " << magnitude << ")");
      }
      if (std::memcmp(&got, &split[size_t(r * p.ldc + j)], 4) != 0 && unsplit++ < 5)
        UNSCOPED_INFO("row " << r << " col " << j << ": " << got << " whole, " << split[size_t(r * p.ldc + j)] << " split at " << cut);
    }
    for (int64_t j = p.n; j < p.ldc; ++j)
      if (whole[size_t(r * p.ldc + j)] != kSentinel || split[size_t(r * p.ldc + j)] != kSentinel) ++bad;
  }
  CHECK(bad == 0);
  CHECK(unsplit == 0);
}

} // namespace

TEST_CASE("N:M f32 and int4 tables match the dense masked reference", "[sparse]") {
  uint32_t seed = 1;
  const auto levels = tables();
  for (int pattern : {4, 8})
    for (int64_t k : {32, 96, 576, 1536})
      for (int64_t m : {1, 2, 3, 4, 5, 17, 64, 100}) { // GEMV, batched GEMV, decompressed panels
        const int64_t n = k >= 576 ? 45 : 70; // never a multiple of a panel width
        std::vector<int64_t> groups = k == 32 ? std::vector<int64_t>{32}
                                    : k == 96 ? std::vector<int64_t>{32, 96}
                                    : k == 576 ? std::vector<int64_t>{64, 128} // 128: a shorter last group
                                               : std::vector<int64_t>{128};
        for (bool hasBias : {false, true}) {
          const Problem f32 = makeProblem(m, n, k, pattern, false, 0, hasBias, seed++);
          for (const NmTable *t : levels) check(t, f32);
          for (int64_t group : groups) {
            const Problem q = makeProblem(m, n, k, pattern, true, group, hasBias, seed++);
            for (const NmTable *t : levels) check(t, q);
          }
        }
      }
}

TEST_CASE("N:M tables handle a single output and small ranges", "[sparse]") {
  for (const NmTable *t : tables())
    for (int pattern : {4, 8})
      for (int64_t m : {1, 4, 6}) {
        check(t, makeProblem(m, 1, 64, pattern, false, 0, true, 77));
        check(t, makeProblem(m, 3, 64, pattern, true, 64, false, 78));
      }
}

TEST_CASE("N:M packing writes the documented layout", "[sparse]") {
  // 2:4, one row of 32 columns: group 0 keeps columns 1 and 3, group 1 keeps
  // 0 and 2, the rest keep 0 and 1.
  std::vector<float> w(32);
  for (int c = 0; c < 32; ++c) w[size_t(c)] = float(c);
  std::vector<uint8_t> keep(32, 0);
  keep[1] = keep[3] = keep[4] = keep[6] = 1;
  for (int g = 2; g < 8; ++g) keep[size_t(4 * g)] = keep[size_t(4 * g + 1)] = 1;
  std::vector<float> values(16);
  std::vector<uint8_t> indices(4);
  REQUIRE(cpu::nmPackF32(w.data(), keep.data(), 1, 32, 4, values.data(), indices.data()) == "");
  CHECK(values[0] == 1.0f);
  CHECK(values[1] == 3.0f);
  CHECK(values[2] == 4.0f);
  CHECK(values[3] == 6.0f);
  CHECK(values[4] == 8.0f);
  CHECK(int(indices[0]) == (1 | 3 << 2 | 0 << 4 | 2 << 6));
  CHECK(int(indices[1]) == (0 | 1 << 2 | 0 << 4 | 1 << 6));

  // 4:8: group 0 keeps 0, 2, 5, 7; the others 4..7. int4 codes 3 and 12 first.
  std::vector<uint8_t> keep8(32, 0);
  keep8[0] = keep8[2] = keep8[5] = keep8[7] = 1;
  for (int g = 1; g < 4; ++g)
    for (int i = 4; i < 8; ++i) keep8[size_t(8 * g + i)] = 1;
  std::vector<int32_t> kept(16, 0);
  kept[0] = 3, kept[1] = 12, kept[2] = 15;
  std::vector<uint8_t> codes(8), indices8(8);
  REQUIRE(cpu::nmPackInt4(kept.data(), keep8.data(), 1, 32, 8, codes.data(), indices8.data()) == "");
  CHECK(int(codes[0]) == 0xC3);
  CHECK(int(codes[1]) == 0x0F);
  CHECK(int(indices8[0]) == 0x20);
  CHECK(int(indices8[1]) == 0x75);
  CHECK(int(indices8[2]) == 0x54);
}

TEST_CASE("N:M packing rejects bad masks and shapes with a sentence", "[sparse]") {
  std::vector<float> w(96, 1.0f), values(48);
  std::vector<uint8_t> indices(24);
  std::vector<uint8_t> keep(96, 0);
  for (int g = 0; g < 24; ++g) keep[size_t(4 * g)] = keep[size_t(4 * g + 2)] = 1;
  std::string e = cpu::nmPackF32(w.data(), keep.data(), 2, 48, 4, values.data(), indices.data());
  CHECK_THAT(e, Catch::Contains("multiple of 32") && Catch::Contains("48"));

  keep[size_t(32 + 4 * 3 + 1)] = 1; // row 1, group 3 now keeps 3
  e = cpu::nmPackF32(w.data(), keep.data(), 3, 32, 4, values.data(), indices.data());
  CHECK_THAT(e, Catch::Contains("keeps 3") && Catch::Contains("group 3") && Catch::Contains("row 1") &&
                    Catch::Contains("expected 2"));

  e = cpu::nmPackF32(w.data(), keep.data(), 1, 32, 6, values.data(), indices.data());
  CHECK_THAT(e, Catch::Contains("pattern 6"));

  std::vector<int32_t> kept(16, 16);
  std::vector<uint8_t> codes(8);
  e = cpu::nmPackInt4(kept.data(), keep.data(), 1, 32, 4, codes.data(), indices.data());
  CHECK_THAT(e, Catch::Contains("outside 0..15"));
}

// ------------------------------------------------------------------ bitmap
namespace {

struct BitmapProblem {
  int64_t m = 0, n = 0, k = 0, lda = 0, ldc = 0, nnz = 0;
  bool hasBias = false;
  std::vector<float> x, w, bias, values; // w: the dense [n, k] with its zeros
  std::vector<uint8_t> masks;
};

// Row 1 (when n > 1) is all zeros, the others keep each weight with
// probability `density` (1.0: all of them).
BitmapProblem makeBitmap(int64_t m, int64_t n, int64_t k, double density, bool hasBias, uint32_t seed) {
  BitmapProblem p;
  p.m = m, p.n = n, p.k = k, p.hasBias = hasBias, p.lda = k + 7, p.ldc = n + 5;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  p.x.resize(size_t(m * p.lda));
  for (auto &v : p.x) v = uni(rng);
  p.w.assign(size_t(n * k), 0.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      if (r != 1 && coin(rng) < density) {
        float v = uni(rng);
        p.w[size_t(r * k + c)] = v == 0.0f ? 0.5f : v;
      }
  p.masks.resize(size_t(n * cpu::bitmapMaskBytesPerRow(k)));
  REQUIRE(cpu::bitmapPack(p.w.data(), nullptr, n, k, nullptr, nullptr, &p.nnz) == "");
  p.values.resize(size_t(p.nnz));
  int64_t again = -1;
  REQUIRE(cpu::bitmapPack(p.w.data(), nullptr, n, k, p.values.data(), p.masks.data(), &again) == "");
  REQUIRE(again == p.nnz);
  if (hasBias) {
    p.bias.resize(size_t(n));
    for (auto &b : p.bias) b = uni(rng);
  }
  return p;
}

cpu::BitmapArgs bitmapArgsFor(const BitmapProblem &p, float *c) {
  return cpu::BitmapArgs{p.n, p.k, p.m, p.values.data(), p.masks.data(), p.x.data(), p.lda, c, p.ldc,
                         p.hasBias ? p.bias.data() : nullptr};
}

void checkBitmap(const NmTable *t, const BitmapProblem &p, double density) {
  INFO("table " << t->name << ", bitmap density " << density << ", m " << p.m << " n " << p.n << " k " << p.k
                << (p.hasBias ? ", bias" : ""));
  std::vector<float> whole(size_t(p.m * p.ldc), kSentinel), split(size_t(p.m * p.ldc), kSentinel),
      split2(size_t(p.m * p.ldc), kSentinel);
  cpu::BitmapArgs a = bitmapArgsFor(p, whole.data());
  t->bitmapGemm(&a, 0, p.n);
  // Two uneven splits on panel boundaries: two ranges, the second computed
  // first, and three ranges (some possibly empty) in order.
  const int64_t pw = t->panelWidth, cut = std::min(p.n, pw * std::max<int64_t>(1, p.n / pw / 3));
  const int64_t p1 = std::min(p.n, pw), p2 = std::min(p.n, std::max(p1, pw * (2 * (p.n / pw) / 3 + 1)));
  cpu::BitmapArgs b = bitmapArgsFor(p, split.data());
  t->bitmapGemm(&b, cut, p.n);
  t->bitmapGemm(&b, 0, cut);
  cpu::BitmapArgs b2 = bitmapArgsFor(p, split2.data());
  t->bitmapGemm(&b2, 0, p1);
  t->bitmapGemm(&b2, p1, p2);
  t->bitmapGemm(&b2, p2, p.n);
  int64_t bad = 0, unsplit = 0;
  for (int64_t r = 0; r < p.m; ++r) {
    for (int64_t j = 0; j < p.n; ++j) {
      double ref = p.hasBias ? p.bias[size_t(j)] : 0.0, magnitude = p.hasBias ? std::fabs(p.bias[size_t(j)]) : 0.0;
      for (int64_t c = 0; c < p.k; ++c) {
        const double term = double(p.x[size_t(r * p.lda + c)]) * double(p.w[size_t(j * p.k + c)]);
        ref += term;
        magnitude += std::fabs(term);
      }
      const float got = whole[size_t(r * p.ldc + j)];
      if (!(std::fabs(got - ref) <= 1e-5 * magnitude + 1e-30)) {
        if (bad++ < 5) UNSCOPED_INFO("row " << r << " col " << j << ": got " << got << ", expected " << ref << " (Σ|x·w| " << magnitude << ")");
      }
      for (const std::vector<float> *s : {&split, &split2})
        if (std::memcmp(&got, &(*s)[size_t(r * p.ldc + j)], 4) != 0 && unsplit++ < 5)
          UNSCOPED_INFO("row " << r << " col " << j << ": " << got << " whole, " << (*s)[size_t(r * p.ldc + j)] << " split");
    }
    for (int64_t j = p.n; j < p.ldc; ++j)
      if (whole[size_t(r * p.ldc + j)] != kSentinel || split[size_t(r * p.ldc + j)] != kSentinel ||
          split2[size_t(r * p.ldc + j)] != kSentinel)
        ++bad;
  }
  CHECK(bad == 0);
  CHECK(unsplit == 0);
}

} // namespace

TEST_CASE("bitmap sparse tables match the dense reference at every density", "[sparse]") {
  uint32_t seed = 1000;
  const auto levels = tables();
  for (double density : {0.05, 0.3, 0.5, 0.7, 0.95, 1.0})
    for (int64_t k : {32, 96, 576, 1536})
      for (int64_t m : {1, 2, 3, 5, 17, 64, 100}) { // GEMV, batched GEMV, decompressed panels
        const int64_t n = k >= 576 ? 45 : 70; // never a multiple of a panel width
        for (bool hasBias : {false, true}) {
          const BitmapProblem p = makeBitmap(m, n, k, density, hasBias, seed++);
          for (const NmTable *t : levels) checkBitmap(t, p, density);
        }
      }
}

TEST_CASE("bitmap sparse tables handle a single output and small ranges", "[sparse]") {
  for (const NmTable *t : tables())
    for (int64_t m : {1, 4, 6, 70})
      for (int64_t n : {1, 2, 3}) checkBitmap(t, makeBitmap(m, n, 64, 0.5, true, uint32_t(90 + n)), 0.5);
}

TEST_CASE("bitmap packing writes the documented layout", "[sparse]") {
  // Two rows of 64 columns; row 0 keeps columns 0, 9, 31, 32 and 63 (given a
  // keep mask, which also keeps the zero at column 9), row 1 its nonzeros.
  std::vector<float> w(128, 0.0f);
  for (int c = 0; c < 64; ++c) w[size_t(c)] = c == 9 ? 0.0f : float(c + 1);
  w[64 + 5] = -2.0f, w[64 + 40] = 3.0f;
  std::vector<uint8_t> keep(128, 0);
  for (int c : {0, 9, 31, 32, 63}) keep[size_t(c)] = 1;
  keep[64 + 5] = keep[64 + 40] = 1;
  std::vector<float> values(7);
  std::vector<uint8_t> masks(16);
  int64_t nnz = 0;
  REQUIRE(cpu::bitmapPack(w.data(), keep.data(), 2, 64, values.data(), masks.data(), &nnz) == "");
  CHECK(nnz == 7);
  CHECK(values == std::vector<float>{1.0f, 0.0f, 32.0f, 33.0f, 64.0f, -2.0f, 3.0f});
  CHECK(int(masks[0]) == 0x01);
  CHECK(int(masks[1]) == 0x02);
  CHECK(int(masks[3]) == 0x80);
  CHECK(int(masks[4]) == 0x01);
  CHECK(int(masks[7]) == 0x80);
  CHECK(int(masks[8]) == 0x20);
  CHECK(int(masks[13]) == 0x01);
  CHECK(cpu::bitmapMaskBytesPerRow(64) == 8);
  // Without a keep mask: the nonzeros (row 0 now loses column 9, keeps all others).
  REQUIRE(cpu::bitmapPack(w.data(), nullptr, 2, 64, nullptr, nullptr, &nnz) == "");
  CHECK(nnz == 63 + 2);
}

TEST_CASE("bitmap packing rejects bad shapes with a sentence", "[sparse]") {
  std::vector<float> w(96, 1.0f), values(96);
  std::vector<uint8_t> masks(12);
  int64_t nnz = -1;
  const std::string e = cpu::bitmapPack(w.data(), nullptr, 2, 48, values.data(), masks.data(), &nnz);
  CHECK_THAT(e, Catch::Contains("multiple of 32") && Catch::Contains("48"));
  CHECK(nnz == -1);
  CHECK_THAT(cpu::bitmapPack(w.data(), nullptr, 1, 0, values.data(), masks.data(), &nnz), Catch::Contains("k = 0"));
}
