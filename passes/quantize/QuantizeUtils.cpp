#include "passes/quantize/QuantizeUtils.h"
#include "runtime/core/Glob.h"

#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Location.h"
#include "llvm/ADT/APFloat.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace mlir;

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

namespace {

void put16(std::vector<char> &out, uint16_t v) {
  out.push_back(char(v & 0xff));
  out.push_back(char(v >> 8));
}

struct ErrorSum {
  double diff = 0, norm = 0;
  void add(float w, float hat) {
    diff += double(w - hat) * double(w - hat);
    norm += double(w) * double(w);
  }
  double relative() const { return norm > 0 ? std::sqrt(diff / norm) : 0.0; }
};

} // namespace

Quantized quantizeInt8(const std::vector<float> &w, int64_t out, int64_t in, int64_t group) {
  Quantized q;
  q.codes.resize(size_t(out * in));
  ErrorSum error;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g0 = 0; g0 < in; g0 += group) {
      const float *x = w.data() + r * in + g0;
      const int64_t size = std::min(group, in - g0); // the last group may be shorter
      float amax = 0;
      for (int64_t i = 0; i < size; ++i) amax = std::max(amax, std::fabs(x[i]));
      uint16_t dh = floatToHalf(amax / 127.0f);
      float d = halfToFloat(dh);
      put16(q.scales, dh);
      for (int64_t i = 0; i < size; ++i) {
        int code = d > 0 ? int(std::lround(x[i] / d)) : 0;
        code = std::clamp(code, -127, 127);
        q.codes[size_t(r * in + g0 + i)] = char(int8_t(code));
        error.add(x[i], d * float(code));
      }
    }
  q.relativeError = error.relative();
  return q;
}

Quantized quantizeInt4(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric) {
  Quantized q;
  q.codes.assign(size_t(out * in / 2), 0);
  ErrorSum error;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g0 = 0; g0 < in; g0 += group) {
      const float *x = w.data() + r * in + g0;
      const int64_t size = std::min(group, in - g0); // the last group may be shorter
      float d, mn;
      if (symmetric) { // ggml Q4_0: the value of largest magnitude maps to code 0 (−8)
        float extreme = 0;
        for (int64_t i = 0; i < size; ++i)
          if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
        uint16_t dh = floatToHalf(extreme / -8.0f);
        put16(q.scales, dh);
        d = halfToFloat(dh);
        mn = -8.0f * d;
      } else { // ggml Q4_1
        float lo = x[0], hi = x[0];
        for (int64_t i = 1; i < size; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
        uint16_t dh = floatToHalf((hi - lo) / 15.0f), mh = floatToHalf(lo);
        put16(q.scales, dh);
        put16(q.mins, mh);
        d = halfToFloat(dh);
        mn = halfToFloat(mh);
      }
      for (int64_t i = 0; i < size; ++i) {
        int code = d != 0 ? int(std::lround((x[i] - mn) / d)) : (symmetric ? 8 : 0);
        code = std::clamp(code, 0, 15);
        const int64_t col = g0 + i, block = col / 32, t = col % 32;
        char &byte = q.codes[size_t(r * (in / 2) + block * 16 + t % 16)];
        byte = char(t < 16 ? (uint8_t(byte) & 0xF0) | code : (uint8_t(byte) & 0x0F) | (code << 4));
        error.add(x[i], d * float(code) + mn);
      }
    }
  q.relativeError = error.relative();
  return q;
}

Quantized quantizeInt3(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric) {
  Quantized q;
  q.codes.assign(size_t(out * (in / 32) * 12), 0);
  ErrorSum error;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g0 = 0; g0 < in; g0 += group) {
      const float *x = w.data() + r * in + g0;
      const int64_t size = std::min(group, in - g0); // the last group may be shorter
      float d, mn;
      if (symmetric) {
        float extreme = 0;
        for (int64_t i = 0; i < size; ++i)
          if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
        uint16_t dh = floatToHalf(extreme / -4.0f);
        put16(q.scales, dh);
        d = halfToFloat(dh);
        mn = -4.0f * d;
      } else {
        float lo = x[0], hi = x[0];
        for (int64_t i = 1; i < size; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
        uint16_t dh = floatToHalf((hi - lo) / 7.0f), mh = floatToHalf(lo);
        put16(q.scales, dh);
        put16(q.mins, mh);
        d = halfToFloat(dh);
        mn = halfToFloat(mh);
      }
      for (int64_t i = 0; i < size; ++i) {
        int code = d != 0 ? int(std::lround((x[i] - mn) / d)) : (symmetric ? 4 : 0);
        code = std::clamp(code, 0, 7);
        const int64_t col = g0 + i, t = col % 32;
        char *block = &q.codes[size_t(r * (in / 32) * 12 + (col / 32) * 12)];
        block[t % 8] = char(uint8_t(block[t % 8]) | ((code & 3) << (2 * (t / 8))));
        block[8 + t / 8] = char(uint8_t(block[8 + t / 8]) | (((code >> 2) & 1) << (t % 8)));
        error.add(x[i], d * float(code) + mn);
      }
    }
  q.relativeError = error.relative();
  return q;
}

Quantized quantizeBf16(const std::vector<float> &w, int64_t out, int64_t in) {
  Quantized q;
  q.codes.reserve(size_t(out * in) * 2);
  ErrorSum error;
  for (float x : w) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u); // nearest even (finite weights)
    uint16_t h = uint16_t(rounded >> 16);
    put16(q.codes, h);
    uint32_t back = uint32_t(h) << 16;
    float hat;
    std::memcpy(&hat, &back, 4);
    error.add(x, hat);
  }
  q.relativeError = error.relative();
  return q;
}

std::optional<std::vector<float>> readF32(ElementsAttr attr) {
  auto type = cast<ShapedType>(attr.getType());
  if (!type.getElementType().isF32()) return std::nullopt;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob || blob->getData().size() != size_t(type.getNumElements()) * 4) return std::nullopt;
    std::vector<float> out(size_t(type.getNumElements()));
    std::memcpy(out.data(), blob->getData().data(), out.size() * 4);
    return out;
  }
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    std::vector<float> out;
    for (float v : dense.getValues<float>()) out.push_back(v);
    return out;
  }
  return std::nullopt;
}

std::string opName(Operation *op) {
  Location loc = op->getLoc();
  if (auto name = dyn_cast<NameLoc>(loc)) return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(inner)) return name.getName().str();
  return "";
}

bool matchesAny(const std::string &name, llvm::ArrayRef<std::string> patterns, bool emptyMatches) {
  if (patterns.empty()) return emptyMatches;
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string &p) { return core::glob(p, name); });
}

} // namespace lathe::quantize
