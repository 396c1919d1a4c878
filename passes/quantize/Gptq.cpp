#include "passes/quantize/Gptq.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lathe::quantize {

using MatrixD = Eigen::MatrixXd;
using MatrixF = Eigen::MatrixXf; // column-major: a column of W is contiguous
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

MatrixD prepareHessian(const float *hessian, int64_t in, MatrixF &weights) {
  MatrixD h = Eigen::Map<const RowMatrixF>(hessian, in, in).cast<double>();
  h = 0.5 * (h + h.transpose());
  for (int64_t i = 0; i < in; ++i)
    if (h(i, i) <= 0) {
      h.row(i).setZero(), h.col(i).setZero();
      h(i, i) = 1;
      weights.col(i).setZero();
    }
  return h;
}

bool inverseCholeskyUpper(const MatrixD &h, double dampening, MatrixF &upper, double &lambdaUsed, std::string &error) {
  const int64_t in = h.rows();
  const double meanDiagonal = h.diagonal().mean();
  double lambda = dampening;
  for (int attempt = 0;; ++attempt) {
    MatrixD damped = h;
    damped.diagonal().array() += lambda * meanDiagonal;
    Eigen::LLT<MatrixD> llt(damped);
    if (llt.info() == Eigen::Success) {
      MatrixD inverse = llt.solve(MatrixD::Identity(in, in));
      Eigen::LLT<MatrixD> factor(inverse);
      if (factor.info() == Eigen::Success) {
        upper = MatrixD(factor.matrixU()).cast<float>();
        lambdaUsed = lambda;
        return true;
      }
    }
    if (attempt == 6) {
      error = "the Hessian is not positive definite even with dampening " + std::to_string(lambda);
      return false;
    }
    lambda = lambda > 0 ? lambda * 10 : 1e-6;
  }
}

GptqResult gptq(const GridSpec &spec, const float *w, int64_t out, int64_t in, const float *hessian,
                const GptqOptions &options) {
  GptqResult result;
  const int64_t groups = spec.groupsPerRow(in);
  MatrixF weights = Eigen::Map<const RowMatrixF>(w, out, in); // [out, in], column-major copy
  MatrixD h = prepareHessian(hessian, in, weights);
  // Activation order: the columns with the largest input energy first.
  std::vector<int64_t> order(static_cast<size_t>(in));
  std::iota(order.begin(), order.end(), 0);
  if (options.activationOrder)
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return h(a, a) > h(b, b); });
  const bool staticGroups = options.activationOrder || spec.groupSize > options.blockSize ||
                            options.blockSize % spec.groupSize != 0;
  result.grids.resize(size_t(out * groups));
  result.codes.assign(size_t(out * in), 0);
  if (staticGroups) {
    RowMatrixF original = weights; // after zeroing dead columns
    std::vector<int16_t> unused;
    fitRtn(spec, original.data(), out, in, result.grids, unused);
  }
  MatrixF permuted(out, in);
  MatrixD hp(in, in);
  for (int64_t i = 0; i < in; ++i) {
    permuted.col(i) = weights.col(order[size_t(i)]);
    for (int64_t j = 0; j < in; ++j) hp(i, j) = h(order[size_t(i)], order[size_t(j)]);
  }
  MatrixF upper;
  if (!inverseCholeskyUpper(hp, options.dampening, upper, result.dampeningUsed, result.error)) return result;
  std::vector<float> groupValues;
  for (int64_t b0 = 0; b0 < in; b0 += options.blockSize) {
    const int64_t b1 = std::min(in, b0 + options.blockSize), count = b1 - b0;
    MatrixF block = permuted.middleCols(b0, count);
    MatrixF errors(out, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t column = order[size_t(b0 + i)], group = column / spec.groupSize;
      if (!staticGroups && column % spec.groupSize == 0) {
        // Fit this group's grids on the error-updated weights (the group lies in this block).
        const int64_t size = std::min(spec.groupSize, in - column);
        groupValues.resize(size_t(size));
        for (int64_t r = 0; r < out; ++r) {
          for (int64_t k = 0; k < size; ++k) groupValues[size_t(k)] = block(r, i + k);
          result.grids[size_t(r * groups + group)] = fitGrid(spec, groupValues.data(), size);
        }
      }
      const float diagonal = upper(b0 + i, b0 + i);
      for (int64_t r = 0; r < out; ++r) {
        const Grid &grid = result.grids[size_t(r * groups + group)];
        const int code = grid.code(block(r, i));
        result.codes[size_t(r * in + column)] = int16_t(code);
        errors(r, i) = (block(r, i) - grid.value(code)) / diagonal;
      }
      if (i + 1 < count)
        block.rightCols(count - i - 1).noalias() -=
            errors.col(i) * upper.block(b0 + i, b0 + i + 1, 1, count - i - 1);
    }
    if (b1 < in) permuted.rightCols(in - b1).noalias() -= errors * upper.block(b0, b1, count, in - b1);
  }
  return result;
}

double relativeOutputError(const float *w, const float *what, int64_t out, int64_t in, const float *hessian) {
  Eigen::Map<const RowMatrixF> weights(w, out, in), quantized(what, out, in), h(hessian, in, in);
  const MatrixD hd = h.cast<double>(), wd = weights.cast<double>(), delta = wd - quantized.cast<double>();
  const double num = ((delta * hd).array() * delta.array()).sum(), den = ((wd * hd).array() * wd.array()).sum();
  return den > 0 ? num / den : 0.0;
}

} // namespace lathe::quantize
