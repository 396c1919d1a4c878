#include "passes/quantize/Awq.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

namespace lathe::quantize {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

/// Σ over rows of Δ H Δᵀ for Δ row-major [out, in].
double outputLoss(const RowMatrixF &delta, const Eigen::Map<const RowMatrixF> &h) {
  RowMatrixF dh = delta * h;
  return (dh.array().cast<double>() * delta.array().cast<double>()).sum();
}

} // namespace

AwqScales searchScales(const GridSpec &spec, const std::vector<AwqLayer> &layers, int64_t in, const float *meanAbs,
                       const float *hessian, const AwqOptions &options) {
  Eigen::Map<const RowMatrixF> h(hessian, in, in);
  AwqScales best;
  best.loss = std::numeric_limits<double>::infinity();
  std::vector<float> scales(static_cast<size_t>(in)), scaled, restored;
  std::vector<Grid> grids;
  std::vector<int16_t> codes;
  // Duo scaling (AutoAWQ): the mean over every output row of |w| relative to its group's max |w|.
  std::vector<double> weightMean(static_cast<size_t>(in), 0.0);
  if (options.duoScaling) {
    int64_t rows = 0;
    for (const AwqLayer &layer : layers) {
      for (int64_t r = 0; r < layer.out; ++r)
        for (int64_t g0 = 0; g0 < in; g0 += spec.groupSize) {
          const int64_t g1 = std::min(in, g0 + spec.groupSize);
          float peak = 0;
          for (int64_t i = g0; i < g1; ++i) peak = std::max(peak, std::fabs(layer.weight[r * in + i]));
          if (peak > 0)
            for (int64_t i = g0; i < g1; ++i) weightMean[size_t(i)] += std::fabs(layer.weight[r * in + i]) / peak;
        }
      rows += layer.out;
    }
    for (double &m : weightMean) m /= double(std::max<int64_t>(1, rows));
  }
  const int64_t steps = std::max<int64_t>(1, options.scaleGrid);
  for (int64_t candidate = 0; candidate < (options.duoScaling ? 2 : 1) * steps; ++candidate) {
    const int64_t step = candidate % steps;
    const bool duo = candidate >= steps;
    const double alpha = double(step) / double(steps);
    float lo = std::numeric_limits<float>::infinity(), hi = 0;
    for (int64_t i = 0; i < in; ++i) {
      double v = std::pow(std::max<double>(meanAbs[i], 0.0), alpha);
      if (duo) v /= std::pow(weightMean[size_t(i)], 1.0 - alpha) + 1e-4;
      scales[size_t(i)] = std::max(1e-4f, float(v));
      lo = std::min(lo, scales[size_t(i)]), hi = std::max(hi, scales[size_t(i)]);
    }
    const float norm = std::sqrt(lo * hi);
    for (float &s : scales) s /= norm;
    double loss = 0;
    for (const AwqLayer &layer : layers) {
      const int64_t n = layer.out * in;
      scaled.resize(size_t(n)), restored.resize(size_t(n));
      for (int64_t r = 0; r < layer.out; ++r)
        for (int64_t i = 0; i < in; ++i) scaled[size_t(r * in + i)] = layer.weight[r * in + i] * scales[size_t(i)];
      fitRtn(spec, scaled.data(), layer.out, in, grids, codes);
      const int64_t groups = spec.groupsPerRow(in);
      for (int64_t r = 0; r < layer.out; ++r)
        for (int64_t i = 0; i < in; ++i)
          restored[size_t(r * in + i)] = layer.weight[r * in + i] -
                                         grids[size_t(r * groups + i / spec.groupSize)].value(codes[size_t(r * in + i)]) /
                                             scales[size_t(i)];
      loss += outputLoss(Eigen::Map<const RowMatrixF>(restored.data(), layer.out, in), h);
    }
    if (candidate == 0) best.rtnLoss = loss;
    if (loss < best.loss) {
      best.loss = loss;
      best.alpha = alpha;
      best.duo = duo;
      best.scales = scales;
    }
  }
  return best;
}

std::vector<float> searchClip(const GridSpec &spec, const float *w, int64_t out, int64_t in, const float *hessian,
                              const AwqOptions &options) {
  Eigen::Map<const RowMatrixF> weights(w, out, in), h(hessian, in, in);
  const int64_t groups = spec.groupsPerRow(in);
  std::vector<float> ratios(size_t(out * groups), 1.0f);
  std::vector<double> bestLoss(size_t(out * groups), std::numeric_limits<double>::infinity());
  const int64_t steps = int64_t(double(options.clipGrid) * options.maxShrink);
  RowMatrixF delta(out, spec.groupSize);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c0 = g * spec.groupSize, size = std::min(spec.groupSize, in - c0);
    const RowMatrixF block = weights.middleCols(c0, size);
    const RowMatrixF hg = h.block(c0, c0, size, size);
    for (int64_t k = 0; k <= steps; ++k) {
      const float ratio = 1.0f - float(k) / float(options.clipGrid);
      delta.resize(out, size);
      for (int64_t r = 0; r < out; ++r) {
        const Grid grid = fitGrid(spec, block.row(r).data(), size, ratio);
        for (int64_t i = 0; i < size; ++i) delta(r, i) = block(r, i) - grid.round(block(r, i));
      }
      const RowMatrixF dh = delta * hg;
      for (int64_t r = 0; r < out; ++r) {
        const double loss = (dh.row(r).array().cast<double>() * delta.row(r).array().cast<double>()).sum();
        if (loss < bestLoss[size_t(r * groups + g)]) bestLoss[size_t(r * groups + g)] = loss, ratios[size_t(r * groups + g)] = ratio;
      }
    }
  }
  return ratios;
}

} // namespace lathe::quantize
