// Weight-only quantization arithmetic shared by the quantization passes and the
// GGUF importer (which maps Q8_0 / Q4_0 / Q4_1 blocks onto the same formats).
// Codes and f16 scales are bytes laid out exactly as lathe.quantized_linear and
// the runtime's compact-weight kernels read them.
#pragma once

#include "passes/quantize/Grid.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Operation.h"

#include <optional>
#include <string>
#include <vector>

namespace lathe::quantize {

/// Round to nearest into a format (see Grid.h), `w` row-major [out, in].
Quantized quantizeInt8(const std::vector<float> &w, int64_t out, int64_t in, int64_t group);
Quantized quantizeInt4(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric);
Quantized quantizeInt3(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric);
Quantized quantizeBf16(const std::vector<float> &w, int64_t out, int64_t in);
Quantized quantizeF16(const std::vector<float> &w, int64_t out, int64_t in);

/// The values of an f32 constant (dense or dense_resource).
std::optional<std::vector<float>> readF32(mlir::ElementsAttr attr);

/// An array of the op's lathe.calibration statistics ("xtx", "mean_abs",
/// "absmax"), or nullopt when absent or not `count` f32 values.
std::optional<std::vector<float>> calibrationArray(mlir::Operation *op, llvm::StringRef key, int64_t count);

/// The calibration histogram of |x| (lathe.calibration abs_hist, i64 counts):
/// bin b holds the values whose f32 bit pattern shifted right by
/// kAbsHistogramShift is b, so bins are ordered and their edges exact floats.
constexpr int kAbsHistogramShift = 18;
constexpr uint32_t kAbsHistogramBins = 1u << (31 - kAbsHistogramShift);
/// The `percent` percentile of |x| from the op's histogram (the upper edge of
/// the bin where the cumulative count reaches it, at most `absmax`), or
/// nullopt without a histogram.
std::optional<double> absPercentile(mlir::Operation *op, double percent, double absmax);

/// A dense_resource f32 constant of `type` holding `values`.
mlir::ElementsAttr f32Resource(mlir::RankedTensorType type, llvm::StringRef blobName, const std::vector<float> &values);

/// The op's node name (its NameLoc), for recipes' patterns and reports.
std::string opName(mlir::Operation *op);

/// Glob (`*`, `?`) match of `name` against any pattern; an empty list matches when `emptyMatches`.
bool matchesAny(const std::string &name, llvm::ArrayRef<std::string> patterns, bool emptyMatches);

} // namespace lathe::quantize
