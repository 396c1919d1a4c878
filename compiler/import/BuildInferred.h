// Building lathe ops from untrusted models: create the op with placeholder
// result types, then run its type inference. A model that makes inference
// fail (mismatched shapes, bad axes) gets the diagnostic as an error string
// instead of the fatal error MLIR's inferring builders raise. Shared by the
// ONNX and GGUF importers.
#pragma once

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"

#include <sstream>
#include <string>

namespace lathe::importer {

/// Concatenates anything streamable into one message.
template <typename... Args> std::string cat(Args &&...args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// The op with inferred result types, or null with `error` set (the op is erased).
template <typename OpTy>
mlir::Operation *buildInferred(mlir::OpBuilder &builder, mlir::Location loc, mlir::ValueRange operands,
                               llvm::ArrayRef<mlir::NamedAttribute> attrs, unsigned results, std::string &error) {
  mlir::MLIRContext *ctx = builder.getContext();
  mlir::OperationState state(loc, OpTy::getOperationName());
  state.addOperands(operands);
  state.addAttributes(attrs);
  state.addTypes(llvm::SmallVector<mlir::Type>(results, mlir::NoneType::get(ctx)));
  mlir::Operation *op = builder.create(state);
  std::string message;
  llvm::SmallVector<mlir::Type> types;
  mlir::LogicalResult inferred = mlir::failure();
  {
    mlir::ScopedDiagnosticHandler capture(ctx, [&](mlir::Diagnostic &d) {
      message = d.str();
      return mlir::success();
    });
    inferred = OpTy::inferReturnTypes(ctx, loc, op->getOperands(), op->getRawDictionaryAttrs(),
                                      op->getPropertiesStorage(), op->getRegions(), types);
  }
  if (mlir::failed(inferred) || types.size() != results) {
    op->erase();
    error = message.empty() ? std::string("cannot infer the result type") : message;
    return nullptr;
  }
  for (unsigned i = 0; i < results; ++i) op->getResult(i).setType(types[i]);
  return op;
}

} // namespace lathe::importer
