// Pruning arithmetic on one weight matrix, without MLIR (passes/prune/).
//
//   magnitude  score |w_ij|; unstructured: the smallest `sparsity` fraction of
//              the whole layer is removed
//   wanda      score |w_ij|·‖x_j‖₂ (Sun et al., 2023), ‖x_j‖² = (XᵀX)_jj from
//              calibration; unstructured: compared within each output row
//   sparsegpt  (Frantar & Alistarh, 2023) columns processed left to right in
//              blocks of `blockSize`; the mask of a block is chosen from
//              w²/[H⁻¹]_jj² (whole block for unstructured, each M-group of a row
//              for N:M) and each removed weight's error is spread over the
//              columns not yet processed through U = chol(H⁻¹)ᵀ, as GPTQ does
//              for rounding, so the remaining weights compensate.
// N:M keeps exactly N of every M consecutive weights of a row (the largest
// scores). Ties go to the lower column index, so masks are deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::prune {

struct Pattern {
  int n = 0, m = 0; // N:M, or 0:0 for unstructured
  bool structured() const { return m > 0; }
};

/// The keep mask (1 = kept) [out, in] for scores [out, in]: N:M per group, or
/// the `sparsity` fraction removed per row (`perRow`) or over the whole matrix.
std::vector<uint8_t> selectMask(const std::vector<float> &score, int64_t out, int64_t in, double sparsity,
                                Pattern pattern, bool perRow);

struct SparseGptResult {
  std::vector<float> weights; // [out, in], removed weights exactly 0
  std::vector<uint8_t> keep;  // [out, in]
  double dampeningUsed = 0;
  std::string error; // non-empty: nothing was produced
};

/// `w` row-major [out, in]; `hessian` row-major [in, in].
SparseGptResult sparseGpt(const float *w, int64_t out, int64_t in, const float *hessian, double sparsity,
                          Pattern pattern, double dampening, int64_t blockSize);

} // namespace lathe::prune
