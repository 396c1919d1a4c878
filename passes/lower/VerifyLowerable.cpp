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

/// True if `v`'s value (not just its shape) is computed from a graph input.
bool dependsOnInputData(Value v, llvm::DenseSet<Value> &seen) {
  if (!seen.insert(v).second) return false;
  if (isa<BlockArgument>(v)) return true;
  Operation *op = v.getDefiningOp();
  if (isa<ir::ShapeOfOp, ir::PositionsOp, ir::ConstantOp>(op)) return false;
  for (Value operand : op->getOperands())
    if (dependsOnInputData(operand, seen)) return true;
  return false;
}

/// The operands that decide a result shape, which the runtime needs before running.
SmallVector<std::pair<Value, StringRef>> shapeOperands(Operation *op) {
  if (auto r = dyn_cast<ir::ReshapeOp>(op)) return {{r.getShape(), "shape"}};
  if (auto e = dyn_cast<ir::ExpandOp>(op)) return {{e.getShape(), "shape"}};
  if (auto f = dyn_cast<ir::FillOp>(op)) return {{f.getShape(), "shape"}};
  if (auto s = dyn_cast<ir::SliceOp>(op))
    return {{s.getStarts(), "starts"}, {s.getEnds(), "ends"}, {s.getAxes(), "axes"}, {s.getSteps(), "steps"}};
  if (auto r = dyn_cast<ir::RangeOp>(op)) return {{r.getStart(), "start"}, {r.getLimit(), "limit"}, {r.getDelta(), "delta"}};
  return {};
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
      for (auto [operand, name] : shapeOperands(op)) {
        llvm::DenseSet<Value> seen;
        if (dependsOnInputData(operand, seen)) {
          op->emitError() << "the " << name << " operand decides the result shape but is computed from input "
                          << "data; the runtime plans shapes before running, so it must come from constants or shapes";
          ok = false;
        }
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
