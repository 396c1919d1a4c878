// Quantization grids of the weight-only formats, without MLIR: one grid (f16
// scale, f16 min, code range) per group of a row, the codes it gives, and the
// packing of codes into the byte layouts lathe.quantized_linear and the
// runtime's kernels read. Round-to-nearest, GPTQ and AWQ all produce a grid per
// group plus a code per weight and hand them to packGroups, so every method
// writes exactly the same format.
//
//   int8  symmetric: d = max|w|/127, code in −127..127, ŵ = d·code
//   int4  symmetric (ggml Q4_0): d = m/−8 (m the value of largest magnitude),
//         code in 0..15, ŵ = d·(code − 8);  asymmetric (Q4_1): d = (max−min)/15, ŵ = d·code + min
//   int3  symmetric: d = m/−4, code in 0..7, ŵ = d·(code − 4);  asymmetric: d = (max−min)/7
// Scales and mins are rounded to f16 before codes are computed, so ŵ is exactly
// what the runtime dequantizes. A clip ratio < 1 shrinks the range before the
// fit (AWQ's clipping search).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe::quantize {

uint16_t floatToHalf(float f);
float halfToFloat(uint16_t h);

struct GridSpec {
  std::string format = "int8"; // int8 | int4 | int3
  int64_t groupSize = 0;       // weights per grid along a row (the last group of a row may be shorter)
  bool symmetric = true;       // int4/int3 only; int8 is always symmetric
  int64_t groupsPerRow(int64_t in) const { return (in + groupSize - 1) / groupSize; }
  int bits() const { return format == "int8" ? 8 : format == "int4" ? 4 : 3; }
};

struct Grid {
  float scale = 0, min = 0; // ŵ = scale·code + min (int8: min = 0)
  uint16_t scaleHalf = 0, minHalf = 0;
  int qmin = 0, qmax = 0, zeroCode = 0; // the code used when scale = 0
  bool int8 = false;
  int code(float x) const;
  float value(int code) const { return scale * float(code) + min; }
  float round(float x) const { return value(code(x)); }
};

/// The grid of one group of `n` weights, with the range shrunk by `clip`.
Grid fitGrid(const GridSpec &spec, const float *x, int64_t n, float clip = 1.0f);

/// Packed weights of one [out, in] matrix.
struct Quantized {
  std::vector<char> codes;        // int8 [out, in] | uint8 [out, in/2] (ggml nibble order) | 12 B per 32 (int3) | bf16/f16 [out, in]
  std::vector<char> scales, mins; // f16 [out, groups]; mins: asymmetric int4/int3
  double relativeError = 0;       // ‖W − Ŵ‖ / ‖W‖ against `original`
};

/// Packs grids ([out, groups] row-major) and codes ([out, in] row-major) into
/// the format's bytes; the error is measured against `original` ([out, in]).
Quantized packGroups(const GridSpec &spec, int64_t out, int64_t in, const std::vector<Grid> &grids,
                     const std::vector<int16_t> &codes, const float *original);

/// Round to nearest: each group's grid from its own values (times `clip`, one
/// ratio per group when given), each weight to its nearest code.
Quantized quantizeRtn(const GridSpec &spec, const float *w, int64_t out, int64_t in, const std::vector<float> *clip = nullptr);

/// Round-to-nearest grids and codes, unpacked (for methods that refine them).
void fitRtn(const GridSpec &spec, const float *w, int64_t out, int64_t in, std::vector<Grid> &grids,
            std::vector<int16_t> &codes, const std::vector<float> *clip = nullptr);

Quantized quantizeBf16(const float *w, int64_t count);

/// The largest finite IEEE half.
constexpr float kHalfMax = 65504.0f;
/// The index of the first weight that is not a number of magnitude at most
/// kHalfMax (quantizeF16 refuses such a layer rather than saturate it), or -1.
int64_t firstOutsideHalfRange(const float *w, int64_t count);
/// IEEE half storage, round to nearest even; every |w| must be <= kHalfMax.
Quantized quantizeF16(const float *w, int64_t count);

} // namespace lathe::quantize
