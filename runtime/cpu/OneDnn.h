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
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

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

/// A linear layer's constant f32 weight W [n, k], re-laid out once (at session
/// open) by oneDNN's reorder for its matmul primitive (brgemm kernels at
/// AVX-512). Against dnnl_sgemm on the unpacked weight (which packs B on every
/// call): MiniLM's FFN at 128 rows 1.29 -> 1.05 ms per layer on one thread.
///
/// Threads share the work in one of two ways, and neither changes a bit of the
/// result (oneDNN sums each element over k in the same order whatever the
/// number of rows, and whatever the number of columns as long as the output
/// block is dense; checked at 1 and 2 threads by the kernel tests):
///  - rows: each thread a range of rows against the whole weight (many rows);
///  - columns: each thread a block of 64-column panels, written densely and
///    copied into place (few rows: decoding). The blocks are ranges of the one
///    packed copy where oneDNN's layout allows (it does for its blocked f32
///    layouts: panels of 64 columns one after another), else own copies.
/// Where a session's packed weights live: blocks of 32 MiB (or more), 2 MiB
/// aligned and offered to the kernel for transparent huge pages, the weights
/// carved from them one after another. Streaming a weight then walks a handful
/// of TLB entries instead of one per 4 KiB (MiniLM, batch 1, one thread: 22.3
/// -> 21.9 ms).
class WeightArena {
public:
  ~WeightArena();
  /// `bytes` (64-byte aligned) that live as long as the arena; null when out of memory.
  float *take(size_t bytes);

private:
  std::vector<std::pair<void *, size_t>> blocks_;
  size_t used_ = 0; // in the last block
};

class PackedLinear {
public:
  ~PackedLinear();
  int parts() const { return parts_; }
  int64_t columnBegin(int t) const { return entries_[size_t(t)].n0; }
  int64_t columnEnd(int t) const { return entries_[size_t(t)].n0 + entries_[size_t(t)].nc; }
  /// Creates (once per row count) the primitives for `m` rows: of the whole
  /// weight (rows split) or of each column block. Call from one thread before
  /// the parts run. False when oneDNN offers no primitive whose weight layout
  /// is the packed one (the caller then uses dnnl_sgemm or its own GEMM).
  bool prepare(int64_t m, bool bias, bool whole);
  /// Whole weight: y [m, n] = x [m, k]·Wᵀ (+ bias) as part `t`'s work (t picks
  /// its stream: one per part, so parts may run at once). After prepare(m, bias, true).
  bool runRows(int t, const float *x, int64_t m, const float *bias, float *y) const;
  /// Column block t: y[:, block] = x·W[block]ᵀ (+ bias[block]), y [m, n].
  /// After prepare(m, bias, false).
  bool runColumns(int t, const float *x, int64_t m, const float *bias, float *y) const;

private:
  friend std::unique_ptr<PackedLinear> packLinear(const float *, int64_t, int64_t, int, const std::shared_ptr<WeightArena> &,
                                                  std::string &);
  PackedLinear() = default;
  struct Entry {
    int64_t n0 = 0, nc = 0;
    void *md = nullptr;     // dnnl_memory_desc_t of the packed layout
    void *memory = nullptr; // dnnl_memory_t over it
    float *owned = nullptr; // its storage when not a range of the whole weight's
  };
  bool runEntry(size_t e, int t, const float *x, int64_t m, const float *bias, float *y, int64_t ldy) const;
  int parts_ = 1;
  int64_t n_ = 0, k_ = 0;
  std::shared_ptr<WeightArena> arena_;
  float *storage_ = nullptr;   // the whole weight, packed (in arena_)
  std::vector<Entry> entries_; // column blocks 0..parts-1 (when parts > 1), then the whole weight
  std::vector<void *> streams_; // one dnnl_stream_t per part
  mutable std::mutex mutex_;
  // (m, bias, entry) -> primitive (null: oneDNN offered none) and its scratchpad bytes
  std::map<std::tuple<int64_t, bool, size_t>, std::pair<void *, size_t>> primitives_;
};

/// Packs W [n, k] for `chunks` threads; null with `error` when oneDNN's matmul
/// is unavailable (no libdnnl, or a runtime built without its headers).
std::unique_ptr<PackedLinear> packLinear(const float *w, int64_t n, int64_t k, int chunks, const std::shared_ptr<WeightArena> &arena,
                                         std::string &error);

} // namespace lathe::cpu
