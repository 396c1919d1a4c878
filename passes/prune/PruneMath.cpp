#include "passes/prune/PruneMath.h"

#include "passes/quantize/Gptq.h"

#include <Eigen/Dense>

#include <algorithm>
#include <numeric>

namespace lathe::prune {

namespace {

using MatrixF = Eigen::MatrixXf;
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Marks the `remove` lowest of `count` scores (read through `at`) as pruned
/// (through `put`); ties: the lower index goes first.
template <class At, class Put> void removeLowest(int64_t count, int64_t remove, At &&at, Put &&put) {
  if (remove <= 0) return;
  if (count <= 16) { // N:M groups: a selection on the stack
    int64_t order[16];
    for (int64_t i = 0; i < count; ++i) order[i] = i;
    for (int64_t i = 0; i < std::min(remove, count); ++i) {
      int64_t best = i;
      for (int64_t j = i + 1; j < count; ++j)
        if (at(order[j]) < at(order[best]) || (at(order[j]) == at(order[best]) && order[j] < order[best])) best = j;
      std::swap(order[i], order[best]);
      put(order[i]);
    }
    return;
  }
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  auto less = [&](int64_t a, int64_t b) { return at(a) < at(b) || (at(a) == at(b) && a < b); };
  if (remove < count) std::nth_element(order.begin(), order.begin() + remove, order.end(), less);
  for (int64_t i = 0; i < std::min(remove, count); ++i) put(order[size_t(i)]);
}

} // namespace

std::vector<uint8_t> selectMask(const std::vector<float> &score, int64_t out, int64_t in, double sparsity,
                                Pattern pattern, bool perRow) {
  std::vector<uint8_t> keep(static_cast<size_t>(out * in), 1);
  auto prune = [&](int64_t i) { keep[size_t(i)] = 0; };
  if (pattern.structured()) {
    for (int64_t r = 0; r < out; ++r)
      for (int64_t g = 0; g + pattern.m <= in; g += pattern.m) {
        const int64_t base = r * in + g;
        removeLowest(pattern.m, pattern.m - pattern.n, [&](int64_t i) { return score[size_t(base + i)]; },
                     [&](int64_t i) { prune(base + i); });
      }
  } else if (perRow) {
    const auto remove = int64_t(sparsity * double(in));
    for (int64_t r = 0; r < out; ++r)
      removeLowest(in, remove, [&](int64_t i) { return score[size_t(r * in + i)]; }, [&](int64_t i) { prune(r * in + i); });
  } else {
    const auto remove = int64_t(sparsity * double(out * in));
    removeLowest(out * in, remove, [&](int64_t i) { return score[size_t(i)]; }, prune);
  }
  return keep;
}

SparseGptResult sparseGpt(const float *w, int64_t out, int64_t in, const float *hessian, double sparsity,
                          Pattern pattern, double dampening, int64_t blockSize) {
  SparseGptResult result;
  if (pattern.structured() && blockSize % pattern.m) blockSize = (blockSize / pattern.m + 1) * pattern.m;
  MatrixF weights = Eigen::Map<const RowMatrixF>(w, out, in);
  Eigen::MatrixXd h = quantize::prepareHessian(hessian, in, weights);
  MatrixF upper;
  if (!quantize::inverseCholeskyUpper(h, dampening, upper, result.dampeningUsed, result.error)) return result;
  std::vector<uint8_t> keep(static_cast<size_t>(out * in), 1);
  for (int64_t b0 = 0; b0 < in; b0 += blockSize) {
    const int64_t b1 = std::min(in, b0 + blockSize), count = b1 - b0;
    MatrixF block = weights.middleCols(b0, count);
    MatrixF errors(out, count);
    // The saliency w² / [H⁻¹]_jj² = (w / U_jj)² (U_jj² = [H⁻¹]_jj as the block begins).
    auto saliency = [&](int64_t r, int64_t i) {
      const float v = block(r, i) / upper(b0 + i, b0 + i);
      return v * v;
    };
    if (!pattern.structured()) {
      const auto remove = int64_t(sparsity * double(out * count));
      removeLowest(out * count, remove, [&](int64_t e) { return saliency(e % out, e / out); },
                   [&](int64_t e) { keep[size_t((e % out) * in + b0 + e / out)] = 0; });
    }
    for (int64_t i = 0; i < count; ++i) {
      if (pattern.structured() && i % pattern.m == 0 && i + pattern.m <= count) {
        for (int64_t r = 0; r < out; ++r)
          removeLowest(pattern.m, pattern.m - pattern.n, [&](int64_t j) { return saliency(r, i + j); },
                       [&](int64_t j) { keep[size_t(r * in + b0 + i + j)] = 0; });
      }
      const float diagonal = upper(b0 + i, b0 + i);
      for (int64_t r = 0; r < out; ++r) {
        const float value = block(r, i);
        const bool kept = keep[size_t(r * in + b0 + i)];
        errors(r, i) = kept ? 0.f : value / diagonal;
        if (!kept) block(r, i) = 0;
      }
      if (i + 1 < count)
        block.rightCols(count - i - 1).noalias() -= errors.col(i) * upper.block(b0 + i, b0 + i + 1, 1, count - i - 1);
    }
    weights.middleCols(b0, count) = block;
    if (b1 < in) weights.rightCols(in - b1).noalias() -= errors * upper.block(b0, b1, count, in - b1);
  }
  result.weights.resize(static_cast<size_t>(out * in));
  Eigen::Map<RowMatrixF>(result.weights.data(), out, in) = weights;
  for (size_t i = 0; i < keep.size(); ++i)
    if (!keep[i]) result.weights[i] = 0.f;
  result.keep = std::move(keep);
  return result;
}

} // namespace lathe::prune
