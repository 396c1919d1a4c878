// Measures single-thread fp32 GEMM throughput (C = A·Wᵀ, the linear layer's
// form) of the runtime's own kernel at each ISA level this CPU supports, and
// of Eigen built with -march=x86-64-v4 for comparison. A measurement, not a test.
#include "runtime/cpu/Kernels.h"

#include <chrono>
#include <cstdio>
#include <vector>

#ifdef LATHE_HAVE_EIGEN_BENCH
double eigenLinearSeconds(const float *a, const float *w, float *c, long m, long n, long k, int reps);
#endif

int main() {
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
