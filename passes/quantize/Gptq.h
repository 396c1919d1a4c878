// GPTQ (Frantar et al., 2022) on one weight matrix, without MLIR: quantize the
// columns one at a time and spread each column's rounding error over the
// columns not yet quantized, weighted by the inverse of the layer's Hessian
// H = Σ xᵀx (from calibration), so the layer's output error ‖X(W − Ŵ)ᵀ‖ — not the
// weight error — is what the rounding minimises.
//
//   H ← H + λ·mean(diag H)·I  (dampening; columns never seen get H_ii = 1 and W_:i = 0)
//   U = chol(H⁻¹)ᵀ (upper);  for each column j (in activation order when asked):
//     q_j = grid(w_j),  e_j = (w_j − q_j) / U_jj,  W_:,k −= e_j · U_jk  for k > j
// in blocks of `blockSize` columns with the updates to later blocks batched (a
// GEMM per block). Each group's grid is fitted when its first column is
// reached (from the error-updated weights), or up front from the original
// weights when the order is permuted or a group is wider than a block ("static
// groups"), so the result is exactly one of the formats of Grid.h.
#pragma once

#include "passes/quantize/Grid.h"

#include <Eigen/Dense>

#include <string>
#include <vector>

namespace lathe::quantize {

struct GptqOptions {
  double dampening = 0.01; // λ, a fraction of the mean diagonal
  bool activationOrder = false;
  int64_t blockSize = 128;
};

struct GptqResult {
  std::vector<Grid> grids;    // [out, groups]
  std::vector<int16_t> codes; // [out, in]
  double dampeningUsed = 0;   // λ after any increase needed for a positive-definite H
  std::string error;          // non-empty: nothing was produced
};

/// H = Σ xᵀx (row-major [in, in]) symmetrised in f64, with every channel
/// calibration never saw (H_ii ≤ 0) given H_ii = 1 and its column of
/// `weights` ([out, in]) zeroed: its weights cannot matter.
Eigen::MatrixXd prepareHessian(const float *hessian, int64_t in, Eigen::MatrixXf &weights);

/// U = chol((H + λ·mean(diag H)·I)⁻¹)ᵀ (upper), λ = `dampening` raised ×10 up
/// to six times until H is positive definite; false with `error` otherwise.
bool inverseCholeskyUpper(const Eigen::MatrixXd &h, double dampening, Eigen::MatrixXf &upper, double &lambdaUsed,
                          std::string &error);

/// `w` row-major [out, in]; `hessian` row-major [in, in] (symmetric).
GptqResult gptq(const GridSpec &spec, const float *w, int64_t out, int64_t in, const float *hessian,
                const GptqOptions &options);

/// tr(Δ H Δᵀ) / tr(W H Wᵀ) with Δ = W − Ŵ: the layer's relative output error
/// (squared) on the calibration inputs whose Gram matrix is H.
double relativeOutputError(const float *w, const float *what, int64_t out, int64_t in, const float *hessian);

} // namespace lathe::quantize
