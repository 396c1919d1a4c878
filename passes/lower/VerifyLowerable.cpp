// The lower phase's gate: everything left in the module must map onto a
// runtime kernel and a storable tensor type, and constants must have data.
#include "passes/Passes.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"

using namespace mlir;

namespace lathe::passes {
#define GEN_PASS_DEF_VERIFYLOWERABLE
#include "passes/Passes.h.inc"

namespace {

bool storable(Type t) {
  auto ranked = dyn_cast<RankedTensorType>(t);
  if (!ranked) return false;
  Type e = ranked.getElementType();
  if (e.isF32() || e.isF16() || e.isBF16() || e.isF64()) return true;
  if (auto i = dyn_cast<IntegerType>(e)) {
    if (i.isUnsigned()) return i.getWidth() == 8;
    return llvm::is_contained({1u, 8u, 16u, 32u, 64u}, i.getWidth());
  }
  return false;
}

struct VerifyLowerablePass : impl::VerifyLowerableBase<VerifyLowerablePass> {
  void runOnOperation() override {
    bool ok = true;
    func::FuncOp func = getOperation();
    for (BlockArgument arg : func.getArguments())
      if (!storable(arg.getType())) {
        emitError(func.getLoc()) << "graph input " << arg.getArgNumber() << " has type " << arg.getType()
                                 << ", which the runtime does not store";
        ok = false;
      }
    func.walk([&](Operation *op) {
      if (isa<func::FuncOp, func::ReturnOp>(op)) return;
      if (!isa<ir::LatheDialect>(op->getDialect())) {
        op->emitError() << "op " << op->getName() << " has no runtime kernel";
        ok = false;
        return;
      }
      for (Value result : op->getResults())
        if (!storable(result.getType())) {
          op->emitError() << "result type " << result.getType() << " is not one the runtime stores";
          ok = false;
        }
      if (auto c = dyn_cast<ir::ConstantOp>(op))
        if (auto resource = dyn_cast<DenseResourceElementsAttr>(c.getValue()); resource && !resource.getRawHandle().getBlob()) {
          op->emitError() << "weight '" << resource.getRawHandle().getKey()
                          << "' has no data (text .mlir dumps elide weights; compile from .onnx or .mlirbc)";
          ok = false;
        }
    });
    if (!ok) signalPassFailure();
  }
};
} // namespace
} // namespace lathe::passes
