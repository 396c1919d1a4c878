// Shape arithmetic and host-side constant evaluation shared by type inference,
// folders and the simplification passes, so static and dynamic paths agree.
#pragma once

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <string>
#include <vector>

namespace lathe::ir {

constexpr int64_t kDynamic = mlir::ShapedType::kDynamic;

/// Numpy broadcasting of two shapes; fails on static mismatches.
mlir::FailureOr<llvm::SmallVector<int64_t>> broadcastShapes(llvm::ArrayRef<int64_t> a,
                                                             llvm::ArrayRef<int64_t> b);

/// Normalizes a possibly negative axis against a rank; nullopt if out of range.
std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank);

/// A constant tensor evaluated on the host: floats as double, integers and
/// booleans as int64. Used for folding small constants (shape arithmetic,
/// masks), never for running models.
struct HostTensor {
  llvm::SmallVector<int64_t> shape;
  mlir::Type elementType;
  std::vector<double> floats;   // when elementType is a float type
  std::vector<int64_t> ints;    // when elementType is an integer type
  bool isFloat() const { return mlir::isa<mlir::FloatType>(elementType); }
  int64_t numElements() const;
  double getDouble(int64_t i) const { return isFloat() ? floats[i] : double(ints[i]); }
  int64_t getInt(int64_t i) const { return isFloat() ? int64_t(floats[i]) : ints[i]; }
};

/// Element count limit for host folding (keeps folding cheap and bounded).
constexpr int64_t kMaxFoldElements = int64_t(1) << 20;

/// Reads an elements attribute (dense or dense_resource) if it has at most
/// maxElements elements and a supported element type.
std::optional<HostTensor> readHostTensor(mlir::Attribute attr,
                                         int64_t maxElements = kMaxFoldElements);
/// Reads the constant feeding a value, if any.
std::optional<HostTensor> readConstantValue(mlir::Value value,
                                            int64_t maxElements = kMaxFoldElements);
/// Integer contents of a constant 0-D/1-D integer value.
std::optional<llvm::SmallVector<int64_t>> getConstantInts(mlir::Value value);
/// The single value of a constant holding one element (any shape), as double.
std::optional<double> getConstantScalar(mlir::Value value);

/// Builds an elements attribute of the given type from host data (small ones
/// as dense, large ones as a dense_resource blob named `blobName`).
mlir::ElementsAttr makeElementsAttr(mlir::RankedTensorType type, const HostTensor &data,
                                    llvm::StringRef blobName = "folded");

/// Copies raw little-endian bytes into a dense_resource attribute.
mlir::ElementsAttr makeResourceAttr(mlir::RankedTensorType type, llvm::StringRef blobName,
                                    llvm::ArrayRef<char> bytes);

std::string shapeToString(llvm::ArrayRef<int64_t> shape);

} // namespace lathe::ir
