// AWQ (Lin et al., 2023) on the linear layers that read one input, without
// MLIR: a scale per input channel, s = mean|x|^α / √(max·min), searched over α
// on a grid so that quantizing W·diag(s) and undoing the scale loses the least
// output, then a clipping ratio per weight group. The loss of a candidate is
// the layers' output error on the calibration inputs, computed exactly from
// their Gram matrix H = Σ xᵀx:  Σ_layers tr(Δ H Δᵀ),  Δ = W − RTN(W·diag(s))·diag(1/s).
// α = 0 is round-to-nearest, so the search never returns worse than RTN on the
// calibration data. The caller folds 1/s into the op that produces the input.
#pragma once

#include "passes/quantize/Grid.h"

#include <vector>

namespace lathe::quantize {

struct AwqOptions {
  int64_t scaleGrid = 20;  // α ∈ {0, 1/n, …, (n−1)/n}
  int64_t clipGrid = 20;   // clip ratios 1 − k/n for k = 0 … n·maxShrink
  double maxShrink = 0.5;
  bool duoScaling = true;  // also try s = mean|x|^α / mean(|w|/max|w|)^(1−α) (AutoAWQ's duo scaling)
};

struct AwqLayer {
  const float *weight; // row-major [out, in]
  int64_t out;
};

struct AwqScales {
  std::vector<float> scales; // [in]; the input is divided by these, weight columns multiplied
  double alpha = 0, rtnLoss = 0, loss = 0;
  bool duo = false; // the best scales came from the duo-scaling family
};

/// Searches the input-channel scales shared by `layers` (which all read the same
/// input of `in` channels, with per-channel mean |x| `meanAbs` and Gram `hessian`).
AwqScales searchScales(const GridSpec &spec, const std::vector<AwqLayer> &layers, int64_t in, const float *meanAbs,
                       const float *hessian, const AwqOptions &options);

/// Per-group clipping ratios ([out, groups]) of `w` minimising each group's share
/// of the output error, Δ_g H_gg Δ_gᵀ (the Gram of the input the layer reads).
std::vector<float> searchClip(const GridSpec &spec, const float *w, int64_t out, int64_t in, const float *hessian,
                              const AwqOptions &options);

} // namespace lathe::quantize
