// Helpers shared by the simplification passes: symbolic shape values, type
// refinement, and small builders.
#pragma once

#include "dialects/lathe/LatheDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <optional>

namespace lathe::passes {

/// A dimension, named by the tensor it was first seen on: two DimRefs are the
/// same size at run time when they compare equal.
struct DimRef {
  mlir::Value value;
  int64_t dim = -1;
  bool operator==(const DimRef &o) const { return value == o.value && dim == o.dim; }
  bool valid() const { return bool(value); }
};

/// Follows shape-preserving ops back to the earliest tensor that has this
/// dimension (so hidden states and input_ids share their batch dimension).
DimRef canonicalDim(mlir::Value value, int64_t dim);

/// One element of an integer shape vector: a constant, a dimension, or unknown.
struct SymbolicElement {
  std::optional<int64_t> constant;
  DimRef dim;
  bool isConstant() const { return constant.has_value(); }
  bool isDim() const { return !constant && dim.valid(); }
};

/// Symbolic contents of a 0-D or 1-D integer tensor computed from shapes.
std::optional<llvm::SmallVector<SymbolicElement>> symbolicValue(mlir::Value value);

/// Re-infers result types in order so that folded shapes become static;
/// updates the function signature to match its return values.
void refineTypes(mlir::func::FuncOp func);

/// Folds everything foldable and removes dead ops.
mlir::LogicalResult foldAndClean(mlir::func::FuncOp func);

/// A 1-D i64 constant.
mlir::Value makeI64Constant(mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<int64_t> values);

/// Transposes a constant 2-D weight [rows, cols] → [cols, rows] byte-wise
/// (works for any element width and for dense_resource blobs of any size).
std::optional<mlir::ElementsAttr> transposeWeight(mlir::ElementsAttr weight, llvm::StringRef blobName);

} // namespace lathe::passes
