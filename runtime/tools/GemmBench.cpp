// Measures GEMM throughput (C = A·Wᵀ, the linear layer's form). A measurement, not a test.
//   lathe-gemm-bench        single-thread fp32: the runtime's own kernel at each
//                           ISA level this CPU supports, and Eigen (-march=x86-64-v4)
//   lathe-gemm-bench int8 [threads...]
//                           W8A8 (Int8Gemm.h): quantizeActivations + gemm of every
//                           int8 table on 1 and 2 threads (or those given), against the fp32 avx512
//                           kernel with pre-packed weights, at MiniLM and SmolLM2 shapes,
//                           and oneDNN's dnnl_gemm_u8s8s32 when built with it (int32
//                           output only: no quantization, no dequantizing epilogue)
#include "runtime/cpu/CpuFeatures.h"
#include "runtime/cpu/Int8Gemm.h"
#include "runtime/cpu/Kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#ifdef LATHE_HAVE_DNNL_BENCH
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

#ifdef LATHE_HAVE_EIGEN_BENCH
double eigenLinearSeconds(const float *a, const float *w, float *c, long m, long n, long k, int reps);
#endif

namespace {

using lathe::core::ThreadPool;

// Seconds per call: the best of 10 batches of about 20 ms each (the machine is shared).
double secondsPerCall(const std::function<void()> &fn) {
  fn();
  auto t0 = std::chrono::steady_clock::now();
  fn();
  double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int reps = int(std::max(1.0, 0.02 / std::max(once, 1e-9)));
  double best = 1e30;
  for (int batch = 0; batch < 10; ++batch) {
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return best;
}

// The runtime's split (Kernels.cpp runGemm): output columns on panel multiples,
// or rows in multiples of 12 when there are few panels and many rows.
void splitGemm(ThreadPool &pool, int64_t m, int64_t n, int64_t panel, const std::function<void(int64_t, int64_t)> &cols,
               const std::function<void(int64_t, int64_t)> &rows) {
  const int64_t panels = (n + panel - 1) / panel;
  if (panels >= 2 * pool.size() || m < 2 * 12 * pool.size()) pool.parallelFor(n, cols, panel);
  else pool.parallelFor(m, rows, 12);
}

// 64-byte aligned storage for packed layouts.
struct AlignedBytes {
  std::vector<uint8_t> storage;
  uint8_t *data;
  explicit AlignedBytes(int64_t bytes) : storage(size_t(bytes) + 64) {
    data = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
  }
};

int int8Bench(const std::vector<int> &threadCounts) {
  using namespace lathe::cpu;
  const IsaTable *fp32 = nullptr;
  for (const auto &name : supportedIsas()) fp32 = isaByName(name); // the widest: avx512 here
  std::vector<const Int8Table *> tables;
  if (cpuHasAmxInt8()) tables.push_back(int8amx::table());
  if (cpuHasAvx512Vnni()) tables.push_back(int8vnni::table());
  for (const auto &name : supportedIsas())
    if (name == "avx2") tables.push_back(int8avx2::table());
  tables.push_back(int8baseline::table());

  struct Shape { const char *model; int64_t m, k, n; };
  std::vector<Shape> shapes;
  const int64_t miniLm[][2] = {{384, 384}, {384, 1536}, {1536, 384}};
  const int64_t smolLm[][2] = {{576, 576}, {576, 192}, {576, 1536}, {1536, 576}};
  for (int64_t m : {128, 1024})
    for (const auto &kn : miniLm) shapes.push_back({"MiniLM", m, kn[0], kn[1]});
  for (const auto &kn : smolLm) shapes.push_back({"SmolLM2", 512, kn[0], kn[1]});
  for (const auto &kn : miniLm) shapes.push_back({"MiniLM", 1, kn[0], kn[1]});
  for (const auto &kn : smolLm) shapes.push_back({"SmolLM2", 1, kn[0], kn[1]});

  std::printf("GOP/s (2·m·n·k per second; int8 includes quantizeActivations), ratio int8/fp32\n");
  std::printf("%-8s %5s %5s %5s thr  fp32-%-7s", "model", "m", "k", "n", fp32->name);
  for (const Int8Table *t : tables) std::printf("  %19s", t->name);
#ifdef LATHE_HAVE_DNNL_BENCH
  std::printf("  %19s", "onednn-u8s8s32");
#endif
  std::printf("\n");
  std::mt19937 rng(1);
  for (const Shape &s : shapes) {
    const int64_t m = s.m, k = s.k, n = s.n;
    std::vector<float> x(size_t(m * k)), w(size_t(n * k)), c(size_t(m * n)), wScale(size_t(n), 0.01f), rowScale(static_cast<size_t>(m));
    std::uniform_real_distribution<float> fd(-1.0f, 1.0f);
    for (float &v : x) v = fd(rng);
    for (float &v : w) v = fd(rng);
    std::vector<int8_t> wq(size_t(n * k));
    std::uniform_int_distribution<int> qd(-127, 127);
    for (int8_t &v : wq) v = int8_t(qd(rng));
    std::vector<float> fp32Packed(size_t(fp32->packedWeightSize(n, k)));
    fp32->packWeights(w.data(), n, k, fp32Packed.data());
    const double ops = 2.0 * double(m) * double(n) * double(k);
    for (int threads : threadCounts) {
      ThreadPool pool(threads);
      GemmArgs g{x.data(), k, w.data(), k, 1, c.data(), n, nullptr, m, n, k, fp32Packed.data()};
      const double fp32Sec = secondsPerCall([&] {
        splitGemm(pool, m, n, fp32->gemmPanelWidth, [&](int64_t b, int64_t e) { fp32->gemm(&g, b, e); },
                  [&](int64_t b, int64_t e) {
                    GemmArgs part = g;
                    part.a = g.a + b * g.lda;
                    part.c = g.c + b * g.ldc;
                    part.m = e - b;
                    fp32->gemm(&part, 0, n);
                  });
      });
      std::printf("%-8s %5ld %5ld %5ld %3d  %12.1f", s.model, long(m), long(k), long(n), threads, ops / fp32Sec * 1e-9);
      for (const Int8Table *t : tables) {
        AlignedBytes packed(t->packedWeightBytes(n, k)), xq(t->activationBytes(m, k));
        t->packWeights(wq.data(), n, k, packed.data);
        Int8GemmArgs a{xq.data, packed.data, rowScale.data(), wScale.data(), nullptr, c.data(), n, m, n, k};
        const double sec = secondsPerCall([&] {
          pool.parallelFor(m, [&](int64_t b, int64_t e) {
            t->quantizeActivations(x.data(), k, k, b, e, nullptr, 0.0f, xq.data, rowScale.data());
          });
          splitGemm(pool, m, n, t->panelWidth, [&](int64_t b, int64_t e) { t->gemm(&a, b, e); },
                    [&](int64_t b, int64_t e) { t->gemmRows(&a, b, e); });
        });
        std::printf("  %11.1f (%5.2fx)", ops / sec * 1e-9, fp32Sec / sec);
      }
#ifdef LATHE_HAVE_DNNL_BENCH
      {
        omp_set_num_threads(threads);
        std::vector<uint8_t> au8(size_t(m * k), 100);
        std::vector<int32_t> c32(size_t(m * n));
        const int32_t zero = 0;
        const double sec = secondsPerCall([&] {
          dnnl_gemm_u8s8s32('N', 'T', 'F', m, n, k, 1.0f, au8.data(), k, 0, wq.data(), k, 0, 0.0f, c32.data(), n, &zero);
        });
        std::printf("  %11.1f (%5.2fx)", ops / sec * 1e-9, fp32Sec / sec);
      }
#endif
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc > 1 && !std::strcmp(argv[1], "int8")) {
    std::vector<int> threads;
    for (int i = 2; i < argc; ++i) threads.push_back(std::max(1, std::atoi(argv[i])));
    return int8Bench(threads.empty() ? std::vector<int>{1, 2} : threads);
  }
  const long shapes[][3] = {{128, 384, 384}, {128, 1536, 384}, {128, 384, 1536}, {1024, 384, 384}};
  for (const auto &s : shapes) {
    long m = s[0], n = s[1], k = s[2];
    std::vector<float> a(size_t(m * k)), w(size_t(n * k)), c(size_t(m * n));
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) * 0.1f;
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 5) * 0.1f;
    double flops = 2.0 * double(m) * double(n) * double(k);
    int reps = int(std::max(3.0, 2e9 / flops));
    std::printf("m=%ld n=%ld k=%ld:", m, n, k);
    for (const auto &name : lathe::cpu::supportedIsas()) {
      const lathe::cpu::IsaTable *isa = lathe::cpu::isaByName(name);
      lathe::cpu::GemmArgs g{a.data(), k, w.data(), k, 1, c.data(), n, nullptr, m, n, k};
      isa->gemm(&g, 0, n);
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) isa->gemm(&g, 0, n);
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      std::printf("  %s %.1f GFLOP/s", name.c_str(), flops / sec * 1e-9);
    }
#ifdef LATHE_HAVE_EIGEN_BENCH
    double sec = eigenLinearSeconds(a.data(), w.data(), c.data(), m, n, k, reps);
    std::printf("  eigen(v4) %.1f GFLOP/s", flops / sec * 1e-9);
#endif
    std::printf("\n");
  }
  return 0;
}
