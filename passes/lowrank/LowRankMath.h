// Truncated low-rank factorisation of one weight matrix, without MLIR
// (passes/lowrank/): W [out, in] ≈ B·A with B [out, r], A [r, in].
//
//   plain SVD:   the r leading singular directions of W (Eckart–Young: the
//                smallest ‖W − BA‖_F).
//   activation-aware (SVD-LLM, Wang et al., 2024): whiten by the Cholesky factor
//                of the calibration Gram matrix H = XᵀX = L·Lᵀ, truncate the SVD
//                of W·L, and undo the whitening: W' = U_r Σ_r V_rᵀ L⁻¹. That
//                minimises the layer's output error ‖X(W − W')ᵀ‖_F instead of
//                the weight error. Computed on the smaller side of W:
//                  out ≤ in: U_r are the leading eigenvectors of (WL)(WL)ᵀ = W H Wᵀ
//                            and W' = U_r U_rᵀ W (identical to the formula above,
//                            and L itself is not needed);
//                  out > in: V_r are the leading eigenvectors of (WL)ᵀ(WL), and
//                            W' = (W L V_r)(V_rᵀ L⁻¹), with L from Eigen's LLT.
// Eigen's self-adjoint eigensolver in f64. The factors are balanced (each
// rank-one term split so that its column of B and row of A have equal norms),
// which suits quantizing them afterwards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::lowrank {

/// How the rank is chosen: `rank` > 0 fixes it; else the smallest rank whose
/// leading squared singular values hold `energy` of the total (0 < energy ≤ 1);
/// else the largest rank with r·(out + in) ≤ keepParams·out·in.
struct RankRule {
  int64_t rank = 0;
  double energy = 0;
  double keepParams = 0;
};

struct Factors {
  std::vector<float> a, b;         // A [rank, in], B [out, rank], row-major
  int64_t rank = 0;
  double energyKept = 0;           // Σ_{i<r} σ_i² / Σ σ_i² (σ of W, or of W·L when activation-aware)
  double weightError = 0;          // ‖W − BA‖_F / ‖W‖_F
  double outputError = -1;         // √(tr(ΔHΔᵀ)/tr(WHWᵀ)) with a Gram matrix, else −1
  std::string error;               // non-empty: nothing was produced
};

/// The rank `rule` asks for (at least 1), from the descending squared
/// singular values of the matrix being truncated.
int64_t chooseRank(const std::vector<double> &sigma2, int64_t out, int64_t in, const RankRule &rule);

/// Factorises `w` (row-major [out, in]). With `hessian` (row-major [in, in],
/// XᵀX) it is activation-aware, with λ·mean(diag H) added to H's diagonal.
Factors factorize(const float *w, int64_t out, int64_t in, const float *hessian, const RankRule &rule,
                  double dampening = 0.01);

} // namespace lathe::lowrank
