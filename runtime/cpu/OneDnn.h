// oneDNN's fp32 GEMM (dnnl_sgemm), loaded at run time from Debian's libdnnl.so.2
// when it is installed: measured 1.2–1.3x Lathe's own AVX-512 kernel on
// MiniLM's shapes (lathe-gemm-bench). Nothing links against it, so the runtime
// still runs (with its own kernels) where the library is absent.
//
//   LATHE_GEMM=auto (default): oneDNN when it loads; own: never; onednn: required
//   (a session cannot open without it).
//
// A session uses it only at the best instruction-set level this CPU runs
// (after LATHE_ISA_MAX, which also caps oneDNN's own dispatch): oneDNN picks its
// kernels by CPU, so a session forced to a lower level keeps Lathe's.
#pragma once

#include <cstdint>
#include <string>

namespace lathe::cpu {

struct Sgemm {
  /// Row-major C = alpha·op(A)·op(B) + beta·C (dnnl_sgemm); returns 0 on success.
  int (*sgemm)(char transA, char transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc) = nullptr;
  /// OpenMP's omp_set_num_threads (oneDNN's CPU runtime), or null: each pool
  /// thread computes its own columns, so oneDNN must not start threads of its own.
  void (*setThreads)(int) = nullptr;
  std::string name; // "oneDNN 2.6.3"
};

/// The GEMM a session at instruction-set `level` uses: oneDNN's, or null for
/// Lathe's own kernels. An error (LATHE_GEMM=onednn without the library, an
/// unknown LATHE_GEMM) is returned in `error` with null.
const Sgemm *sgemmFor(const char *level, std::string &error);

/// What `lathe --version` says about the fp32 GEMM at the best level.
std::string sgemmSummary();

} // namespace lathe::cpu
