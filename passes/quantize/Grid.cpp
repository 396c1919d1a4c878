#include "passes/quantize/Grid.h"
#include "runtime/core/HalfFloat.h"

#include "llvm/ADT/APFloat.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lathe::quantize {

uint16_t floatToHalf(float f) {
  llvm::APFloat v(f);
  bool lost = false;
  v.convert(llvm::APFloat::IEEEhalf(), llvm::APFloat::rmNearestTiesToEven, &lost);
  return uint16_t(v.bitcastToAPInt().getZExtValue());
}

float halfToFloat(uint16_t h) {
  llvm::APFloat v(llvm::APFloat::IEEEhalf(), llvm::APInt(16, h));
  bool lost = false;
  v.convert(llvm::APFloat::IEEEsingle(), llvm::APFloat::rmNearestTiesToEven, &lost);
  return v.convertToFloat();
}

int Grid::code(float x) const {
  if (int8) return std::clamp(scale > 0 ? int(std::lround(x / scale)) : 0, qmin, qmax);
  return std::clamp(scale != 0 ? int(std::lround((x - min) / scale)) : zeroCode, qmin, qmax);
}

Grid fitGrid(const GridSpec &spec, const float *x, int64_t n, float clip) {
  Grid g;
  if (spec.format == "int8") {
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    g.int8 = true;
    g.qmin = -127, g.qmax = 127;
    g.scaleHalf = floatToHalf(amax * clip / 127.0f);
    g.scale = halfToFloat(g.scaleHalf);
    return g;
  }
  const int levels = spec.format == "int4" ? 16 : 8, middle = levels / 2;
  g.qmin = 0, g.qmax = levels - 1;
  if (spec.symmetric) { // the value of largest magnitude maps to code 0 (ggml Q4_0)
    float extreme = 0;
    for (int64_t i = 0; i < n; ++i)
      if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
    g.scaleHalf = floatToHalf(extreme * clip / -float(middle));
    g.scale = halfToFloat(g.scaleHalf);
    g.min = -float(middle) * g.scale;
    g.zeroCode = middle;
  } else { // ggml Q4_1
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    lo *= clip, hi *= clip;
    g.scaleHalf = floatToHalf((hi - lo) / float(levels - 1));
    g.minHalf = floatToHalf(lo);
    g.scale = halfToFloat(g.scaleHalf);
    g.min = halfToFloat(g.minHalf);
  }
  return g;
}

namespace {

void put16(std::vector<char> &out, uint16_t v) {
  out.push_back(char(v & 0xff));
  out.push_back(char(v >> 8));
}

} // namespace

Quantized packGroups(const GridSpec &spec, int64_t out, int64_t in, const std::vector<Grid> &grids,
                     const std::vector<int16_t> &codes, const float *original) {
  Quantized q;
  const int64_t groups = spec.groupsPerRow(in);
  const bool int8 = spec.format == "int8", int4 = spec.format == "int4";
  q.codes.assign(size_t(int8 ? out * in : int4 ? out * in / 2 : out * (in / 32) * 12), 0);
  double diff = 0, norm = 0;
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      put16(q.scales, grids[size_t(r * groups + g)].scaleHalf);
      if (!int8 && !spec.symmetric) put16(q.mins, grids[size_t(r * groups + g)].minHalf);
    }
    for (int64_t col = 0; col < in; ++col) {
      const int code = codes[size_t(r * in + col)];
      const Grid &grid = grids[size_t(r * groups + col / spec.groupSize)];
      const double w = original[r * in + col], hat = grid.value(code);
      diff += (w - hat) * (w - hat), norm += w * w;
      if (int8) {
        q.codes[size_t(r * in + col)] = char(int8_t(code));
      } else if (int4) { // ggml nibble order: low nibbles hold weights 0..15 of a 32-block, high 16..31
        const int64_t t = col % 32;
        char &byte = q.codes[size_t(r * (in / 2) + (col / 32) * 16 + t % 16)];
        byte = char(t < 16 ? (uint8_t(byte) & 0xF0) | code : (uint8_t(byte) & 0x0F) | (code << 4));
      } else { // int3: 8 bytes of 2-bit low parts, 4 bytes of high bits per 32 weights
        const int64_t t = col % 32;
        char *block = &q.codes[size_t(r * (in / 32) * 12 + (col / 32) * 12)];
        block[t % 8] = char(uint8_t(block[t % 8]) | ((code & 3) << (2 * (t / 8))));
        block[8 + t / 8] = char(uint8_t(block[8 + t / 8]) | (((code >> 2) & 1) << (t % 8)));
      }
    }
  }
  q.relativeError = norm > 0 ? std::sqrt(diff / norm) : 0.0;
  return q;
}

void fitRtn(const GridSpec &spec, const float *w, int64_t out, int64_t in, std::vector<Grid> &grids,
            std::vector<int16_t> &codes, const std::vector<float> *clip) {
  const int64_t groups = spec.groupsPerRow(in);
  grids.resize(size_t(out * groups));
  codes.resize(size_t(out * in));
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * spec.groupSize, size = std::min(spec.groupSize, in - c0);
      const float *x = w + r * in + c0;
      Grid &grid = grids[size_t(r * groups + g)];
      grid = fitGrid(spec, x, size, clip ? (*clip)[size_t(r * groups + g)] : 1.0f);
      for (int64_t i = 0; i < size; ++i) codes[size_t(r * in + c0 + i)] = int16_t(grid.code(x[i]));
    }
}

Quantized quantizeRtn(const GridSpec &spec, const float *w, int64_t out, int64_t in, const std::vector<float> *clip) {
  std::vector<Grid> grids;
  std::vector<int16_t> codes;
  fitRtn(spec, w, out, in, grids, codes, clip);
  return packGroups(spec, out, in, grids, codes, w);
}

namespace {

/// 16-bit float storage: encode each weight, and the relative error of what
/// decoding gives back (the runtime's own conversions, round to nearest even).
Quantized quantize16(const float *w, int64_t count, uint16_t (*encode)(float), float (*decode)(uint16_t)) {
  Quantized q;
  q.codes.reserve(size_t(count) * 2);
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float x = w[i];
    const uint16_t h = encode(x);
    put16(q.codes, h);
    const float hat = decode(h);
    diff += double(x - hat) * double(x - hat), norm += double(x) * x;
  }
  q.relativeError = norm > 0 ? std::sqrt(diff / norm) : 0.0;
  return q;
}

} // namespace

Quantized quantizeBf16(const float *w, int64_t count) {
  return quantize16(w, count, numeric::floatToBf16, numeric::bf16ToFloat);
}

int64_t firstOutsideHalfRange(const float *w, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    if (!(std::fabs(w[i]) <= kHalfMax)) return i; // (NaN fails the comparison too)
  return -1;
}

Quantized quantizeF16(const float *w, int64_t count) {
  return quantize16(w, count, numeric::floatToHalf, numeric::halfToFloat);
}

} // namespace lathe::quantize
