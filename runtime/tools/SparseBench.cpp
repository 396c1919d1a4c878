// Measures batch-1 linear layers (GEMV) with N:M sparse weights (SparseNm.h)
// against the runtime's dense fp32 and int4 kernels (IsaKernels.h) at
// SmolLM2-135M's layer shapes; then unstructured (bitmap) sparse weights over
// a density sweep against dense fp32, printing the density THRESHOLD below
// which bitmap is >= 1.1x faster at every shape; then a low-rank pair of
// GEMVs with 20 % fewer parameters against the dense layer. A measurement,
// not a test.
//
//   lathe-sparse-bench [--threads N] [--isa avx512|avx2|baseline] [--mib M] [--rounds R]
//                      [--only nm|bitmap|lowrank]
//
// Decoding is memory-bound, so each variant rotates through enough distinct
// copies of its weights (at least --mib MiB in all, default 64, twice the L3
// of the machines we measure on) that every call reads them from memory.
// GB/s counts the weight bytes a call reads (values, codes, indices, scales;
// not x or y). The dense fp32 weight is the N:M matrix with its zeros, so the
// outputs are compared too (a sanity check, not a test).
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/SparseNm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace lathe::cpu;
using lathe::core::ThreadPool;

// One variant's weights, `copies` times, 64-byte aligned, each copy `bytes` long.
struct Copies {
  std::vector<uint8_t> storage;
  int64_t stride = 0, count = 0;
  uint8_t *at(int64_t i) {
    uint8_t *base = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
    return base + i * stride;
  }
  Copies(int64_t bytes, int64_t minTotal) {
    stride = (bytes + 4095) / 4096 * 4096;
    count = std::max<int64_t>(2, (minTotal + stride - 1) / stride);
    storage.resize(size_t(stride * count + 64));
  }
};

// One way of doing a shape's GEMV: its weights (copies), the call on copy i.
struct Variant {
  const char *name;
  int64_t bytes;            // weight bytes one call reads
  bool int4Peer;            // compared with int4-g128 too
  std::unique_ptr<Copies> copies;
  std::function<void(int64_t)> call;
  double best = 1e30;       // microseconds per call
};

// Best microseconds per call of one batch of at least 5 ms, each call on the
// next copy (so every call reads its weights from memory).
double batchMicros(Variant &v) {
  const int64_t copies = v.copies->count;
  int64_t calls = copies;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < calls; ++i) v.call(i % copies);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.005) return s / double(calls) * 1e6;
    calls *= 2;
  }
}

uint16_t floatToHalfApprox(float f) { // positive normal values only (the bench's scales)
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return uint16_t(((bits >> 23) - 112) << 10 | ((bits >> 13) & 0x3FF));
}

float maxRelDiff(const std::vector<float> &a, const std::vector<float> &b) {
  float worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(b[i]));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(scale, 1e-30f));
  return worst;
}

// Sets the dense fp32 variant's call: y[n] = x[k]·Wᵀ through the level's
// GEMM on pre-packed weights (copies of `w` [n, k]).
void denseCall(Variant &v, const IsaTable *dense, ThreadPool &pool, const float *w, int64_t n, int64_t k,
               const float *x, float *y) {
  Copies *c = v.copies.get();
  for (int64_t i = 0; i < c->count; ++i) dense->packWeights(w, n, k, reinterpret_cast<float *>(c->at(i)));
  v.call = [=, &pool](int64_t i) {
    GemmArgs g{x, k, nullptr, k, 1, y, n, nullptr, 1, n, k, reinterpret_cast<const float *>(c->at(i))};
    pool.parallelFor(n, [&](int64_t b, int64_t e) { dense->gemm(&g, b, e); }, dense->gemmPanelWidth);
  };
}

// Rounds over all variants in turn (the machine is shared: interleaving keeps
// a slow spell from landing on one variant only); the best batch counts.
void measure(std::vector<Variant> &variants, int rounds) {
  for (Variant &v : variants)
    for (int64_t i = 0; i < v.copies->count; ++i) v.call(i);
  for (int round = 0; round < rounds; ++round)
    for (Variant &v : variants) v.best = std::min(v.best, batchMicros(v));
}

struct Shape { const char *name; int64_t n, k; };

// Unstructured (bitmap) sparsity at batch 1 against dense fp32, over a density
// sweep; prints the highest density at which bitmap is still >= 1.1x faster
// than dense at every shape (and every lower density of the sweep).
int bitmapSweep(const IsaTable *dense, const NmTable *nm, ThreadPool &pool, int64_t minBytes, int rounds) {
  const double densities[] = {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  constexpr int D = sizeof densities / sizeof densities[0];
  const Shape shapes[] = {{"q/o", 576, 576}, {"gate/up", 1536, 576}, {"down", 576, 1536}};
  double worst[D];
  for (double &w : worst) w = 1e30;
  std::printf("\nunstructured sparsity (bitmap-f32: values f32 [nnz] + masks u8 [n, k/8]) vs dense fp32, batch 1\n");
  std::printf("%-8s %5s %5s  %-12s %9s %9s %8s %9s\n", "layer", "n", "k", "variant", "us/GEMV", "GB/s", "vs-fp32", "MB/GEMV");
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  for (const Shape &s : shapes) {
    const int64_t n = s.n, k = s.k;
    std::vector<float> x(static_cast<size_t>(k)), y(static_cast<size_t>(n));
    for (float &v : x) v = uni(rng);
    std::vector<Variant> variants;
    variants.reserve(D + 1);
    auto add = [&](const char *name, int64_t bytes, int64_t footprint) -> Variant & {
      variants.push_back(Variant{name, bytes, false, std::make_unique<Copies>(footprint, minBytes), nullptr});
      return variants.back();
    };
    char names[D][16];
    std::vector<float> halfW; // the density-0.5 matrix, for the output comparison
    int halfIndex = -1;
    add("dense-fp32", n * k * 4, dense->packedWeightSize(n, k) * 4); // its call is set below
    for (int d = 0; d < D; ++d) {
      std::vector<float> w(size_t(n * k), 0.0f);
      for (float &v : w)
        if (coin(rng) < densities[d]) v = uni(rng);
      int64_t nnz = 0;
      const int64_t maskBytes = n * bitmapMaskBytesPerRow(k);
      std::vector<uint8_t> masks(static_cast<size_t>(maskBytes));
      if (auto e = bitmapPack(w.data(), nullptr, n, k, nullptr, nullptr, &nnz); !e.empty()) {
        std::fprintf(stderr, "lathe-sparse-bench: %s\n", e.c_str());
        return 1;
      }
      std::vector<float> values(static_cast<size_t>(nnz));
      bitmapPack(w.data(), nullptr, n, k, values.data(), masks.data(), &nnz);
      std::snprintf(names[d], sizeof names[d], "bitmap %.1f", densities[d]);
      const int64_t valueBytes = nnz * 4, bytes = valueBytes + maskBytes;
      Variant &v = add(names[d], bytes, (valueBytes + 63) / 64 * 64 + maskBytes);
      Copies *c = v.copies.get();
      const int64_t maskAt = (valueBytes + 63) / 64 * 64;
      for (int64_t i = 0; i < c->count; ++i) {
        std::memcpy(c->at(i), values.data(), size_t(valueBytes));
        std::memcpy(c->at(i) + maskAt, masks.data(), size_t(maskBytes));
      }
      v.call = [&, c, n, k, maskAt](int64_t i) {
        BitmapArgs a{n, k, 1, reinterpret_cast<const float *>(c->at(i)), c->at(i) + maskAt, x.data(), k, y.data(), n, nullptr};
        pool.parallelFor(n, [&](int64_t b, int64_t e) { nm->bitmapGemm(&a, b, e); }, nm->panelWidth);
      };
      if (densities[d] == 0.5) halfW = w, halfIndex = d + 1;
    }
    denseCall(variants[0], dense, pool, halfW.data(), n, k, x.data(), y.data());
    // Sanity: bitmap computes what dense fp32 computes on the same matrix.
    variants[0].call(0);
    const std::vector<float> yDense = y;
    variants[size_t(halfIndex)].call(0);
    if (float diff = maxRelDiff(y, yDense); diff > 1e-4f)
      std::printf("WARNING: %s: bitmap 0.5 differs from dense fp32 by %g of max |y|\n", s.name, double(diff));
    measure(variants, rounds);
    const double fp32Us = variants[0].best;
    for (size_t i = 0; i < variants.size(); ++i) {
      const Variant &v = variants[i];
      std::printf("%-8s %5ld %5ld  %-12s %9.2f %9.1f %7.2fx %9.3f\n", s.name, long(n), long(k), v.name, v.best,
                  double(v.bytes) / v.best * 1e-3, fp32Us / v.best, double(v.bytes) * 1e-6);
      if (i > 0) worst[i - 1] = std::min(worst[i - 1], fp32Us / v.best);
    }
  }
  double threshold = 0;
  for (int d = 0; d < D && worst[d] >= 1.1; ++d) threshold = densities[d];
  std::printf("worst speed-up over the shapes:");
  for (int d = 0; d < D; ++d) std::printf(" %.1f: %.2fx", densities[d], worst[d]);
  if (threshold > 0) std::printf("\nTHRESHOLD (bitmap >= 1.1x dense fp32 at every shape, %s): density %.1f\n", nm->name, threshold);
  else std::printf("\nTHRESHOLD (bitmap >= 1.1x dense fp32 at every shape, %s): none at or above density %.1f\n", nm->name, densities[0]);
  return 0;
}

// A rank-r factorization (x·Aᵀ, A [r, k], then ·Bᵀ, B [n, r], r = floor(0.8·
// n·k/(n + k)): 20 % fewer parameters) against the dense layer, both through
// the level's GEMM on pre-packed weights, batch 1.
void lowRank(const IsaTable *dense, ThreadPool &pool, int64_t minBytes, int rounds) {
  const Shape shapes[] = {{"q/o", 576, 576}, {"gate/up", 1536, 576}, {"down", 576, 1536}};
  std::printf("\nlow rank (A [r, k] then B [n, r], 20%% fewer parameters) vs dense fp32, batch 1, %s GEMM\n", dense->name);
  std::printf("%-8s %5s %5s %5s  %-12s %9s %9s %8s %9s\n", "layer", "n", "k", "r", "variant", "us/GEMV", "GB/s", "vs-fp32",
              "MB/GEMV");
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (const Shape &s : shapes) {
    const int64_t n = s.n, k = s.k, r = int64_t(std::floor(0.8 * double(n) * double(k) / double(n + k)));
    std::vector<float> x(static_cast<size_t>(k)), t(static_cast<size_t>(r)), y(static_cast<size_t>(n));
    for (float &v : x) v = uni(rng);
    std::vector<float> w(size_t(n * k)), a(size_t(r * k)), b(size_t(n * r));
    for (float &v : w) v = uni(rng);
    for (float &v : a) v = uni(rng);
    for (float &v : b) v = uni(rng);
    std::vector<Variant> variants;
    variants.reserve(2);
    variants.push_back(Variant{"dense-fp32", n * k * 4, false, std::make_unique<Copies>(dense->packedWeightSize(n, k) * 4, minBytes), nullptr});
    denseCall(variants[0], dense, pool, w.data(), n, k, x.data(), y.data());
    const int64_t aBytes = (dense->packedWeightSize(r, k) * 4 + 63) / 64 * 64, bBytes = dense->packedWeightSize(n, r) * 4;
    variants.push_back(Variant{"low-rank", (r * k + n * r) * 4, false, std::make_unique<Copies>(aBytes + bBytes, minBytes), nullptr});
    Copies *c = variants[1].copies.get();
    for (int64_t i = 0; i < c->count; ++i) {
      dense->packWeights(a.data(), r, k, reinterpret_cast<float *>(c->at(i)));
      dense->packWeights(b.data(), n, r, reinterpret_cast<float *>(c->at(i) + aBytes));
    }
    variants[1].call = [&, c, aBytes](int64_t i) {
      GemmArgs g1{x.data(), k, nullptr, k, 1, t.data(), r, nullptr, 1, r, k, reinterpret_cast<const float *>(c->at(i))};
      pool.parallelFor(r, [&](int64_t lo, int64_t hi) { dense->gemm(&g1, lo, hi); }, dense->gemmPanelWidth);
      GemmArgs g2{t.data(), r, nullptr, r, 1, y.data(), n, nullptr, 1, n, r, reinterpret_cast<const float *>(c->at(i) + aBytes)};
      pool.parallelFor(n, [&](int64_t lo, int64_t hi) { dense->gemm(&g2, lo, hi); }, dense->gemmPanelWidth);
    };
    { // Sanity: the two GEMVs compute (x·Aᵀ)·Bᵀ.
      variants[1].call(0);
      double worstErr = 0, scale = 0;
      std::vector<double> ref(static_cast<size_t>(n), 0.0), mid(static_cast<size_t>(r), 0.0);
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < k; ++j) mid[size_t(i)] += double(x[size_t(j)]) * a[size_t(i * k + j)];
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < r; ++j) ref[size_t(i)] += mid[size_t(j)] * b[size_t(i * r + j)];
      for (int64_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(ref[size_t(i)]));
      for (int64_t i = 0; i < n; ++i) worstErr = std::max(worstErr, std::fabs(ref[size_t(i)] - y[size_t(i)]) / scale);
      if (worstErr > 1e-4) std::printf("WARNING: %s: low rank differs from its reference by %g of max |y|\n", s.name, worstErr);
    }
    measure(variants, rounds);
    for (const Variant &v : variants)
      std::printf("%-8s %5ld %5ld %5ld  %-12s %9.2f %9.1f %7.2fx %9.3f\n", s.name, long(n), long(k), long(r), v.name, v.best,
                  double(v.bytes) / v.best * 1e-3, variants[0].best / v.best, double(v.bytes) * 1e-6);
  }
}

} // namespace

int main(int argc, char **argv) {
  int threads = 1;
  std::string isa = "avx512";
  int64_t mib = 64;
  int rounds = 15;
  std::string only; // one section: nm, bitmap or lowrank (default: all)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
    else if (!std::strcmp(argv[i], "--mib") && i + 1 < argc) mib = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "usage: lathe-sparse-bench [--threads N] [--isa avx512|avx2|baseline] [--mib M] [--rounds R] "
                           "[--only nm|bitmap|lowrank]\n");
      return 2;
    }
  }
  std::string error;
  const IsaTable *dense = selectIsa(isa, error);
  const NmTable *nm = nmTableFor(isa.c_str());
  if (!dense || !nm) {
    std::fprintf(stderr, "lathe-sparse-bench: %s\n", error.empty() ? ("no N:M table for instruction set " + isa).c_str() : error.c_str());
    return 1;
  }
  const int64_t minBytes = mib << 20;
  ThreadPool pool(threads);
  std::printf("batch-1 GEMV, y[n] = W[n, k]·x[k]; %s kernels, %d thread(s), >= %ld MiB of weights per variant\n",
              nm->name, threads, long(mib));
  if (only == "bitmap") return bitmapSweep(dense, nm, pool, minBytes, rounds);
  if (only == "lowrank") return lowRank(dense, pool, minBytes, rounds), 0;
  if (!only.empty() && only != "nm") {
    std::fprintf(stderr, "lathe-sparse-bench: --only takes nm, bitmap or lowrank, not %s\n", only.c_str());
    return 2;
  }
  std::printf("%-8s %5s %5s  %-12s %9s %9s %8s %8s %9s\n", "layer", "n", "k", "variant", "us/GEMV", "GB/s", "vs-fp32",
              "vs-int4", "MB/GEMV");

  const Shape shapes[] = {{"q/o", 576, 576}, {"k/v", 192, 576}, {"gate/up", 1536, 576}, {"down", 576, 1536}};
  const int64_t group = 128;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (const Shape &s : shapes) {
    const int64_t n = s.n, k = s.k, groups = (k + group - 1) / group;
    std::vector<float> x(static_cast<size_t>(k)), y(static_cast<size_t>(n));
    for (float &v : x) v = uni(rng);
    std::vector<Variant> variants;
    variants.reserve(5);
    auto add = [&](const char *name, int64_t bytes, bool int4Peer, int64_t footprint) -> Variant & {
      variants.push_back(Variant{name, bytes, int4Peer, std::make_unique<Copies>(footprint, minBytes), nullptr});
      return variants.back();
    };
    std::vector<float> denseW; // the 2:4 matrix with its zeros, for the output comparison

    for (int pattern : {4, 8}) {
      // A random N:M matrix: its dense form (zeros included) for fp32, packed for nm-f32.
      std::vector<uint8_t> keep(size_t(n * k), 0);
      std::vector<float> w(size_t(n * k));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t g = 0; g < k / pattern; ++g) {
          int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
          std::shuffle(order, order + pattern, rng);
          for (int i = 0; i < pattern / 2; ++i) keep[size_t(r * k + g * pattern + order[i])] = 1;
        }
      for (size_t i = 0; i < w.size(); ++i) w[i] = keep[i] ? uni(rng) : 0.0f;
      const int64_t indexBytes = n * nmIndexBytesPerRow(k, pattern);
      std::vector<float> values(size_t(n * k / 2));
      std::vector<uint8_t> indices(static_cast<size_t>(indexBytes));
      if (auto e = nmPackF32(w.data(), keep.data(), n, k, pattern, values.data(), indices.data()); !e.empty()) {
        std::fprintf(stderr, "lathe-sparse-bench: %s\n", e.c_str());
        return 1;
      }
      if (pattern == 4) { // dense fp32 (through the level's pre-packed GEMM), on the 2:4 matrix
        denseW = w;
        Variant &v = add("dense-fp32", n * k * 4, false, dense->packedWeightSize(n, k) * 4);
        Copies *c = v.copies.get();
        for (int64_t i = 0; i < c->count; ++i) dense->packWeights(w.data(), n, k, reinterpret_cast<float *>(c->at(i)));
        v.call = [&, c](int64_t i) {
          GemmArgs g{x.data(), k, nullptr, k, 1, y.data(), n, nullptr, 1, n, k, reinterpret_cast<const float *>(c->at(i))};
          pool.parallelFor(n, [&](int64_t b, int64_t e) { dense->gemm(&g, b, e); }, dense->gemmPanelWidth);
        };
      }
      const int64_t valueBytes = n * k / 2 * 4;
      Variant &v = add(pattern == 4 ? "nm-f32 2:4" : "nm-f32 4:8", valueBytes + indexBytes, false, valueBytes + indexBytes);
      Copies *c = v.copies.get();
      for (int64_t i = 0; i < c->count; ++i) {
        std::memcpy(c->at(i), values.data(), size_t(valueBytes));
        std::memcpy(c->at(i) + valueBytes, indices.data(), size_t(indexBytes));
      }
      v.call = [&, c, pattern, valueBytes](int64_t i) {
        NmArgs a{n, k, 1, pattern, reinterpret_cast<const float *>(c->at(i)), nullptr, nullptr, 0, c->at(i) + valueBytes,
                 x.data(), k, y.data(), n, nullptr};
        pool.parallelFor(n, [&](int64_t b, int64_t e) { nm->gemm(&a, b, e); }, nm->panelWidth);
      };
    }

    { // int4 g128, dense (QuantFormat::Int4, no mins): the level's own quantGemm.
      const int64_t codeBytes = n * k / 2, scaleBytes = n * groups * 2;
      Variant &v = add("int4-g128", codeBytes + scaleBytes, true, codeBytes + scaleBytes);
      std::vector<uint8_t> codes(static_cast<size_t>(codeBytes));
      std::vector<uint16_t> scales(size_t(n * groups));
      for (auto &q : codes) q = uint8_t(rng());
      for (auto &h : scales) h = floatToHalfApprox(0.01f + 0.01f * float(rng() % 100) / 100.0f);
      Copies *c = v.copies.get();
      for (int64_t i = 0; i < c->count; ++i) {
        std::memcpy(c->at(i), codes.data(), size_t(codeBytes));
        std::memcpy(c->at(i) + codeBytes, scales.data(), size_t(scaleBytes));
      }
      v.call = [&, c, codeBytes](int64_t i) {
        QuantArgs q{QuantFormat::Int4, c->at(i), reinterpret_cast<const uint16_t *>(c->at(i) + codeBytes), nullptr,
                    group, x.data(), k, y.data(), n, nullptr, 1, n, k};
        pool.parallelFor(n, [&](int64_t b, int64_t e) { dense->quantGemm(&q, b, e); }, 16); // Kernels.cpp's grain for m <= 4
      };
    }

    { // N:M 2:4 int4 g128.
      std::vector<uint8_t> keep(size_t(n * k), 0);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t g = 0; g < k / 4; ++g) {
          int order[4] = {0, 1, 2, 3};
          std::shuffle(order, order + 4, rng);
          keep[size_t(r * k + g * 4 + order[0])] = keep[size_t(r * k + g * 4 + order[1])] = 1;
        }
      std::vector<int32_t> kept(size_t(n * k / 2));
      for (auto &q : kept) q = int32_t(rng() % 16);
      const int64_t codeBytes = n * k / 4, indexBytes = n * nmIndexBytesPerRow(k, 4), scaleBytes = n * groups * 2;
      std::vector<uint8_t> codes(static_cast<size_t>(codeBytes)), indices(static_cast<size_t>(indexBytes));
      std::vector<uint16_t> scales(size_t(n * groups));
      for (auto &h : scales) h = floatToHalfApprox(0.01f + 0.01f * float(rng() % 100) / 100.0f);
      if (auto e = nmPackInt4(kept.data(), keep.data(), n, k, 4, codes.data(), indices.data()); !e.empty()) {
        std::fprintf(stderr, "lathe-sparse-bench: %s\n", e.c_str());
        return 1;
      }
      const int64_t bytes = codeBytes + indexBytes + scaleBytes;
      Variant &v = add("nm-int4 2:4", bytes, true, bytes);
      Copies *c = v.copies.get();
      for (int64_t i = 0; i < c->count; ++i) {
        std::memcpy(c->at(i), codes.data(), size_t(codeBytes));
        std::memcpy(c->at(i) + codeBytes, indices.data(), size_t(indexBytes));
        std::memcpy(c->at(i) + codeBytes + indexBytes, scales.data(), size_t(scaleBytes));
      }
      v.call = [&, c, codeBytes, indexBytes](int64_t i) {
        NmArgs a{n, k, 1, 4, nullptr, c->at(i), reinterpret_cast<const uint16_t *>(c->at(i) + codeBytes + indexBytes), group,
                 c->at(i) + codeBytes, x.data(), k, y.data(), n, nullptr};
        pool.parallelFor(n, [&](int64_t b, int64_t e) { nm->gemm(&a, b, e); }, nm->panelWidth);
      };
    }

    // Sanity: nm-f32 2:4 computes what dense fp32 computes on the same matrix.
    variants[0].call(0);
    const std::vector<float> yDense = y;
    variants[1].call(0);
    if (float diff = maxRelDiff(y, yDense); diff > 1e-4f)
      std::printf("WARNING: %s: nm-f32 2:4 differs from dense fp32 by %g of max |y|\n", s.name, double(diff));

    measure(variants, rounds);
    const double fp32Us = variants[0].best, int4Us = variants[3].best;
    for (const Variant &v : variants) {
      std::printf("%-8s %5ld %5ld  %-12s %9.2f %9.1f %7.2fx", s.name, long(n), long(k), v.name, v.best,
                  double(v.bytes) / v.best * 1e-3, fp32Us / v.best);
      if (v.int4Peer) std::printf(" %7.2fx", int4Us / v.best);
      else std::printf(" %8s", "");
      std::printf(" %9.3f\n", double(v.bytes) * 1e-6);
    }
  }
  if (!only.empty()) return 0;
  if (int rc = bitmapSweep(dense, nm, pool, minBytes, rounds)) return rc;
  lowRank(dense, pool, minBytes, rounds);
  return 0;
}
