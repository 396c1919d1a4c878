// Measures batch-1 linear layers (GEMV) with N:M sparse weights (SparseNm.h)
// against the runtime's dense fp32 and int4 kernels (IsaKernels.h) at
// SmolLM2-135M's layer shapes. A measurement, not a test.
//
//   lathe-sparse-bench [--threads N] [--isa avx512|avx2|baseline] [--mib M] [--rounds R]
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

} // namespace

int main(int argc, char **argv) {
  int threads = 1;
  std::string isa = "avx512";
  int64_t mib = 64;
  int rounds = 15;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
    else if (!std::strcmp(argv[i], "--mib") && i + 1 < argc) mib = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: lathe-sparse-bench [--threads N] [--isa avx512|avx2|baseline] [--mib M] [--rounds R]\n");
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
  std::printf("%-8s %5s %5s  %-12s %9s %9s %8s %8s %9s\n", "layer", "n", "k", "variant", "us/GEMV", "GB/s", "vs-fp32",
              "vs-int4", "MB/GEMV");

  struct Shape { const char *name; int64_t n, k; };
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

    // Rounds over all variants in turn (the machine is shared: interleaving
    // keeps a slow spell from landing on one variant only); the best batch counts.
    for (Variant &v : variants)
      for (int64_t i = 0; i < v.copies->count; ++i) v.call(i);
    for (int round = 0; round < rounds; ++round)
      for (Variant &v : variants) v.best = std::min(v.best, batchMicros(v));
    const double fp32Us = variants[0].best, int4Us = variants[3].best;
    for (const Variant &v : variants) {
      std::printf("%-8s %5ld %5ld  %-12s %9.2f %9.1f %7.2fx", s.name, long(n), long(k), v.name, v.best,
                  double(v.bytes) / v.best * 1e-3, fp32Us / v.best);
      if (v.int4Peer) std::printf(" %7.2fx", int4Us / v.best);
      else std::printf(" %8s", "");
      std::printf(" %9.3f\n", double(v.bytes) * 1e-6);
    }
  }
  return 0;
}
