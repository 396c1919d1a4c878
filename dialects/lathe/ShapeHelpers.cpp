#include "dialects/lathe/ShapeHelpers.h"

#include "dialects/lathe/LatheDialect.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"

#include <cstring>
#include <sstream>

using namespace mlir;

namespace lathe::ir {

FailureOr<SmallVector<int64_t>> broadcastShapes(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  size_t rank = std::max(a.size(), b.size());
  SmallVector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == 1) out[i] = db;
    else if (db == 1) out[i] = da;
    else if (da == kDynamic) out[i] = db;
    else if (db == kDynamic) out[i] = da;
    else if (da == db) out[i] = da;
    else return failure();
  }
  return out;
}

std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

int64_t HostTensor::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

static double halfToDouble(const llvm::fltSemantics &sem, unsigned bits, uint64_t raw) {
  APFloat v(sem, APInt(bits, raw));
  bool lost = false;
  v.convert(APFloat::IEEEdouble(), APFloat::rmNearestTiesToEven, &lost);
  return v.convertToDouble();
}

static bool decodeBytes(ArrayRef<char> bytes, Type et, int64_t n, HostTensor &out) {
  auto need = [&](size_t width) { return bytes.size() == size_t(n) * width; };
  const char *p = bytes.data();
  if (et.isF32()) {
    if (!need(4)) return false;
    out.floats.resize(n);
    for (int64_t i = 0; i < n; ++i) { float f; std::memcpy(&f, p + 4 * i, 4); out.floats[i] = f; }
  } else if (et.isF64()) {
    if (!need(8)) return false;
    out.floats.resize(n);
    for (int64_t i = 0; i < n; ++i) std::memcpy(&out.floats[i], p + 8 * i, 8);
  } else if (et.isF16() || et.isBF16()) {
    if (!need(2)) return false;
    const auto &sem = et.isF16() ? APFloat::IEEEhalf() : APFloat::BFloat();
    out.floats.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      uint16_t raw; std::memcpy(&raw, p + 2 * i, 2);
      out.floats[i] = halfToDouble(sem, 16, raw);
    }
  } else if (auto it = dyn_cast<IntegerType>(et)) {
    unsigned width = it.getWidth();
    size_t bytesPer = width == 1 ? 1 : width / 8;
    if (width != 1 && width % 8) return false;
    if (!need(bytesPer)) return false;
    out.ints.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t raw = 0;
      std::memcpy(&raw, p + bytesPer * i, bytesPer);
      if (width == 1) out.ints[i] = raw != 0;
      else if (it.isUnsigned() || width == 64) out.ints[i] = int64_t(raw);
      else out.ints[i] = APInt(width, raw).getSExtValue();
    }
  } else {
    return false;
  }
  return true;
}

std::optional<HostTensor> readHostTensor(Attribute attr, int64_t maxElements) {
  auto elements = dyn_cast_or_null<ElementsAttr>(attr);
  if (!elements) return std::nullopt;
  auto type = dyn_cast<RankedTensorType>(elements.getType());
  if (!type || !type.hasStaticShape()) return std::nullopt;
  for (int64_t d : type.getShape())
    if (d < 0) return std::nullopt;
  int64_t n = type.getNumElements();
  if (n > maxElements) return std::nullopt;
  HostTensor out;
  out.shape.assign(type.getShape().begin(), type.getShape().end());
  out.elementType = type.getElementType();
  Type et = out.elementType;
  if (!isa<FloatType>(et) && !isa<IntegerType>(et)) return std::nullopt;
  if (auto dense = dyn_cast<DenseElementsAttr>(attr)) {
    if (isa<FloatType>(et)) {
      out.floats.reserve(n);
      for (APFloat v : dense.getValues<APFloat>()) {
        bool lost = false;
        v.convert(APFloat::IEEEdouble(), APFloat::rmNearestTiesToEven, &lost);
        out.floats.push_back(v.convertToDouble());
      }
    } else {
      auto it = cast<IntegerType>(et);
      out.ints.reserve(n);
      for (APInt v : dense.getValues<APInt>())
        out.ints.push_back(it.getWidth() == 1 || it.isUnsigned() ? int64_t(v.getZExtValue())
                                                                 : v.getSExtValue());
    }
    return out;
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob) return std::nullopt;
    if (!decodeBytes(blob->getData(), et, n, out)) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

std::optional<HostTensor> readConstantValue(Value value, int64_t maxElements) {
  if (!value) return std::nullopt;
  Attribute attr;
  if (!matchPattern(value, m_Constant(&attr))) return std::nullopt;
  return readHostTensor(attr, maxElements);
}

std::optional<SmallVector<int64_t>> getConstantInts(Value value) {
  auto host = readConstantValue(value, 1 << 16);
  if (!host || host->isFloat() || host->shape.size() > 1) return std::nullopt;
  return SmallVector<int64_t>(host->ints.begin(), host->ints.end());
}

std::optional<double> getConstantScalar(Value value) {
  auto host = readConstantValue(value, 1);
  if (!host || host->numElements() != 1) return std::nullopt;
  return host->getDouble(0);
}

static void encodeBytes(const HostTensor &data, Type et, std::vector<char> &bytes) {
  int64_t n = data.numElements();
  auto put = [&](const void *src, size_t width) {
    const char *c = static_cast<const char *>(src);
    bytes.insert(bytes.end(), c, c + width);
  };
  for (int64_t i = 0; i < n; ++i) {
    if (et.isF32()) { float f = float(data.getDouble(i)); put(&f, 4); }
    else if (et.isF64()) { double d = data.getDouble(i); put(&d, 8); }
    else if (et.isF16() || et.isBF16()) {
      APFloat v(data.getDouble(i));
      bool lost = false;
      v.convert(et.isF16() ? APFloat::IEEEhalf() : APFloat::BFloat(), APFloat::rmNearestTiesToEven, &lost);
      uint16_t raw = uint16_t(v.bitcastToAPInt().getZExtValue());
      put(&raw, 2);
    } else {
      unsigned width = cast<IntegerType>(et).getWidth();
      int64_t v = data.getInt(i);
      if (width == 1) { char b = v != 0; put(&b, 1); }
      else put(&v, width / 8);
    }
  }
}

ElementsAttr makeResourceAttr(RankedTensorType type, StringRef blobName, ArrayRef<char> bytes) {
  return DenseResourceElementsAttr::get(
      type, blobName, HeapAsmResourceBlob::allocateAndCopyWithAlign(bytes, 64));
}

ElementsAttr makeElementsAttr(RankedTensorType type, const HostTensor &data, StringRef blobName) {
  Type et = type.getElementType();
  int64_t n = data.numElements();
  if (n > 4096) {
    std::vector<char> bytes;
    encodeBytes(data, et, bytes);
    return makeResourceAttr(type, blobName, bytes);
  }
  if (auto ft = dyn_cast<FloatType>(et)) {
    SmallVector<APFloat> values;
    values.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      APFloat v(data.getDouble(i));
      bool lost = false;
      v.convert(ft.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
      values.push_back(v);
    }
    return DenseElementsAttr::get(type, values);
  }
  auto it = cast<IntegerType>(et);
  if (it.getWidth() == 1) {
    SmallVector<bool> values;
    for (int64_t i = 0; i < n; ++i) values.push_back(data.getInt(i) != 0);
    return DenseElementsAttr::get(type, values);
  }
  SmallVector<APInt> values;
  for (int64_t i = 0; i < n; ++i)
    values.push_back(APInt(it.getWidth(), uint64_t(data.getInt(i)), /*isSigned=*/true));
  return DenseElementsAttr::get(type, values);
}

std::string shapeToString(ArrayRef<int64_t> shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) os << ", ";
    if (shape[i] == kDynamic) os << "?";
    else os << shape[i];
  }
  os << "]";
  return os.str();
}

} // namespace lathe::ir
