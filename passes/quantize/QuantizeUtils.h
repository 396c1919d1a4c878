// Weight-only quantization arithmetic shared by the quantization passes and the
// GGUF importer (which maps Q8_0 / Q4_0 / Q4_1 blocks onto the same formats).
// Codes and f16 scales are bytes laid out exactly as lathe.quantized_linear and
// the runtime's compact-weight kernels read them.
#pragma once

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Operation.h"

#include <optional>
#include <string>
#include <vector>

namespace lathe::quantize {

struct Quantized {
  std::vector<char> codes;        // int8 [out, in] | uint8 [out, in/2] (ggml nibble order) | bf16 [out, in]
  std::vector<char> scales, mins; // f16 [out, ceil(in/group)] (last group may be shorter); mins: asymmetric int4
  double relativeError = 0;       // ‖W − Ŵ‖ / ‖W‖
};

Quantized quantizeInt8(const std::vector<float> &w, int64_t out, int64_t in, int64_t group);
Quantized quantizeInt4(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric);
/// 3-bit codes in 32-weight blocks of 12 bytes (see lathe.quantized_linear):
/// symmetric d = m / -4 (m the value of largest magnitude), q = clamp(round(w/d) + 4, 0, 7);
/// asymmetric d = (max − min)/7, q = clamp(round((w − min)/d), 0, 7).
Quantized quantizeInt3(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric);
Quantized quantizeBf16(const std::vector<float> &w, int64_t out, int64_t in);

uint16_t floatToHalf(float f);
float halfToFloat(uint16_t h);

/// The values of an f32 constant (dense or dense_resource).
std::optional<std::vector<float>> readF32(mlir::ElementsAttr attr);

/// The op's node name (its NameLoc), for recipes' patterns and reports.
std::string opName(mlir::Operation *op);

/// Glob (`*`, `?`) match of `name` against any pattern; an empty list matches when `emptyMatches`.
bool matchesAny(const std::string &name, llvm::ArrayRef<std::string> patterns, bool emptyMatches);

} // namespace lathe::quantize
