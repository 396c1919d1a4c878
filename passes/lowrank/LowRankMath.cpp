#include "passes/lowrank/LowRankMath.h"

#include "passes/quantize/Gptq.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>

namespace lathe::lowrank {

using MatrixD = Eigen::MatrixXd;
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int64_t chooseRank(const std::vector<double> &sigma2, int64_t out, int64_t in, const RankRule &rule) {
  const int64_t full = int64_t(sigma2.size());
  int64_t r = 0;
  if (rule.rank > 0) {
    r = rule.rank;
  } else if (rule.energy > 0) {
    double total = 0, sum = 0;
    for (double s : sigma2) total += std::max(s, 0.0);
    for (r = 0; r < full && (total <= 0 || sum < rule.energy * total); ++r) sum += std::max(sigma2[size_t(r)], 0.0);
  } else {
    r = int64_t(std::floor(rule.keepParams * double(out) * double(in) / double(out + in)));
  }
  return std::clamp<int64_t>(r, 1, std::max<int64_t>(full, 1));
}

Factors factorize(const float *w, int64_t out, int64_t in, const float *hessian, const RankRule &rule, double dampening) {
  Factors f;
  Eigen::MatrixXf wf = Eigen::Map<const RowMatrixF>(w, out, in);
  MatrixD h;
  if (hessian) {
    h = quantize::prepareHessian(hessian, in, wf); // unseen channels: their columns of W cannot matter
    h.diagonal().array() += dampening * h.diagonal().mean();
  }
  const MatrixD W = wf.cast<double>();
  MatrixD B0, A0;
  Eigen::VectorXd values;
  auto leading = [&](const MatrixD &gram, MatrixD &vectors) {
    Eigen::SelfAdjointEigenSolver<MatrixD> eig(gram);
    if (eig.info() != Eigen::Success) return false;
    values = eig.eigenvalues().reverse();
    vectors = eig.eigenvectors().rowwise().reverse();
    return true;
  };
  MatrixD vectors;
  std::vector<double> sigma2;
  auto pick = [&]() {
    sigma2.assign(values.data(), values.data() + values.size());
    f.rank = chooseRank(sigma2, out, in, rule);
    double total = 0, kept = 0;
    for (int64_t i = 0; i < int64_t(sigma2.size()); ++i) {
      const double s = std::max(sigma2[size_t(i)], 0.0);
      total += s;
      if (i < f.rank) kept += s;
    }
    f.energyKept = total > 0 ? kept / total : 1.0;
  };
  if (out <= in) {
    if (!leading(hessian ? MatrixD(W * h * W.transpose()) : MatrixD(W * W.transpose()), vectors)) {
      f.error = "the eigensolver did not converge";
      return f;
    }
    pick();
    B0 = vectors.leftCols(f.rank);
    A0 = B0.transpose() * W;
  } else if (!hessian) {
    if (!leading(W.transpose() * W, vectors)) {
      f.error = "the eigensolver did not converge";
      return f;
    }
    pick();
    A0 = vectors.leftCols(f.rank).transpose();
    B0 = W * vectors.leftCols(f.rank);
  } else {
    Eigen::LLT<MatrixD> llt(h);
    if (llt.info() != Eigen::Success) {
      f.error = "the calibration Gram matrix is not positive definite (raise the dampening)";
      return f;
    }
    const MatrixD L = llt.matrixL();
    const MatrixD WL = W * L;
    if (!leading(WL.transpose() * WL, vectors)) {
      f.error = "the eigensolver did not converge";
      return f;
    }
    pick();
    const MatrixD V = vectors.leftCols(f.rank);
    B0 = WL * V;
    // A = Vᵀ L⁻¹ = (L⁻ᵀ V)ᵀ: one triangular solve with Lᵀ.
    A0 = llt.matrixU().solve(V).transpose();
  }
  // Balance each rank-one term: ‖B_:i‖ = ‖A_i:‖.
  for (int64_t i = 0; i < f.rank; ++i) {
    const double nb = B0.col(i).norm(), na = A0.row(i).norm();
    if (nb > 0 && na > 0) {
      const double s = std::sqrt(na / nb);
      B0.col(i) *= s;
      A0.row(i) /= s;
    }
  }
  f.a.resize(size_t(f.rank * in));
  f.b.resize(size_t(out * f.rank));
  Eigen::Map<RowMatrixF>(f.a.data(), f.rank, in) = A0.cast<float>();
  Eigen::Map<RowMatrixF>(f.b.data(), out, f.rank) = B0.cast<float>();
  const Eigen::MatrixXf approx = Eigen::Map<RowMatrixF>(f.b.data(), out, f.rank) * Eigen::Map<RowMatrixF>(f.a.data(), f.rank, in);
  const Eigen::MatrixXf original = Eigen::Map<const RowMatrixF>(w, out, in);
  const double norm = original.cast<double>().norm();
  f.weightError = norm > 0 ? (original - approx).cast<double>().norm() / norm : 0.0;
  if (hessian) {
    RowMatrixF approxRow = approx;
    f.outputError = std::sqrt(quantize::relativeOutputError(w, approxRow.data(), out, in, hessian));
  }
  return f;
}

} // namespace lathe::lowrank
