#include "passes/quantize/QuantizeUtils.h"
#include "runtime/core/Glob.h"
#include "dialects/lathe/ShapeHelpers.h"

#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Location.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace mlir;

namespace lathe::quantize {

Quantized quantizeInt8(const std::vector<float> &w, int64_t out, int64_t in, int64_t group) {
  return quantizeRtn({"int8", group, true}, w.data(), out, in);
}

Quantized quantizeInt4(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric) {
  return quantizeRtn({"int4", group, symmetric}, w.data(), out, in);
}

Quantized quantizeInt3(const std::vector<float> &w, int64_t out, int64_t in, int64_t group, bool symmetric) {
  return quantizeRtn({"int3", group, symmetric}, w.data(), out, in);
}

Quantized quantizeBf16(const std::vector<float> &w, int64_t out, int64_t in) {
  return quantizeBf16(w.data(), out * in);
}

Quantized quantizeF16(const std::vector<float> &w, int64_t out, int64_t in) {
  return quantizeF16(w.data(), out * in);
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

std::optional<std::vector<float>> calibrationArray(Operation *op, llvm::StringRef key, int64_t count) {
  auto stats = op->getAttrOfType<DictionaryAttr>("lathe.calibration");
  auto attr = stats ? stats.getAs<ElementsAttr>(key) : ElementsAttr();
  if (!attr || cast<ShapedType>(attr.getType()).getNumElements() != count) return std::nullopt;
  return readF32(attr);
}

std::optional<double> absPercentile(Operation *op, double percent, double absmax) {
  auto stats = op->getAttrOfType<DictionaryAttr>("lathe.calibration");
  auto resource = stats ? stats.getAs<DenseResourceElementsAttr>("abs_hist") : DenseResourceElementsAttr();
  AsmResourceBlob *blob = resource ? resource.getRawHandle().getBlob() : nullptr;
  if (!blob || blob->getData().size() != size_t(kAbsHistogramBins) * 8) return std::nullopt;
  std::vector<uint64_t> counts(kAbsHistogramBins);
  std::memcpy(counts.data(), blob->getData().data(), counts.size() * 8);
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0.0;
  const double want = std::clamp(percent, 0.0, 100.0) / 100.0 * double(total);
  uint64_t seen = 0;
  for (uint32_t b = 0; b < kAbsHistogramBins; ++b) {
    seen += counts[b];
    if (double(seen) >= want && seen > 0) {
      const uint32_t edge = (b + 1) << kAbsHistogramShift; // the smallest float above the bin
      float value;
      std::memcpy(&value, &edge, 4);
      return std::min(double(value), absmax);
    }
  }
  return absmax;
}

ElementsAttr f32Resource(RankedTensorType type, llvm::StringRef blobName, const std::vector<float> &values) {
  return ir::makeResourceAttr(type, blobName, {reinterpret_cast<const char *>(values.data()), values.size() * 4});
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
