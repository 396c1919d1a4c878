#include "passes/analysis/ModelStats.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::analysis {
namespace {

std::string dtypeName(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  t.print(os);
  return s;
}

int64_t numElements(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.hasStaticShape() ? t.getNumElements() : -1;
}

/// FLOPs of one op, or -1 when a shape it needs is still dynamic.
double opFlops(Operation *op) {
  auto shapeOf = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  if (auto linear = dyn_cast<LinearOp>(op)) {
    int64_t out = numElements(linear.getResult());
    if (out < 0) return -1;
    int64_t k = shapeOf(linear.getWeight()).getDimSize(1);
    return 2.0 * out * k + (linear.getBias() ? out : 0);
  }
  if (auto linear = dyn_cast<QuantizedLinearOp>(op)) {
    int64_t out = numElements(linear.getResult());
    if (out < 0) return -1;
    return 2.0 * out * linear.getInFeatures() + (linear.getBias() ? out : 0);
  }
  if (auto linear = dyn_cast<SparseLinearOp>(op)) { // N:M keeps half the products
    int64_t out = numElements(linear.getResult());
    if (out < 0) return -1;
    return 1.0 * out * linear.getInFeatures() + (linear.getBias() ? out : 0);
  }
  if (auto mm = dyn_cast<MatMulOp>(op)) {
    int64_t out = numElements(mm.getResult());
    int64_t k = shapeOf(mm.getLhs()).getShape().back();
    if (out < 0 || k == kDynamic) return -1;
    return 2.0 * out * k;
  }
  if (auto att = dyn_cast<AttentionOp>(op)) {
    auto q = shapeOf(att.getQuery()), k = shapeOf(att.getKey()), v = shapeOf(att.getValue());
    if (!q.hasStaticShape() || !k.hasStaticShape() || !v.hasStaticShape()) return -1;
    double scores = double(q.getDimSize(0)) * q.getDimSize(1) * q.getDimSize(2) * k.getDimSize(2);
    return scores * (2.0 * q.getDimSize(3) + 2.0 * v.getDimSize(3) + 5.0);
  }
  if (isa<ConstantOp>(op) || op->getNumResults() != 1 || !isa<RankedTensorType>(op->getResult(0).getType()))
    return 0;
  double perElement = 0;
  if (isa<LayerNormOp, RmsNormOp, SoftmaxOp>(op)) perElement = 5;
  else if (isa<GeluOp, SiluOp>(op)) perElement = 8;
  else if (isa<RotaryOp>(op)) perElement = 3; // two products and a sum per element
  else if (isa<AddOp, SubOp, MulOp, DivOp, PowOp, MaxOp, MinOp, SqrtOp, ErfOp, TanhOp, ExpOp, LogOp, CosOp,
               SinOp, ReluOp, SigmoidOp, NegOp, AbsOp, ReciprocalOp, WhereOp>(op))
    perElement = 1;
  else if (isa<ReduceMeanOp, ReduceSumOp, ReduceMaxOp, ReduceMinOp>(op)) {
    int64_t in = numElements(op->getOperand(0));
    return in < 0 ? -1 : double(in);
  }
  if (perElement == 0) return 0;
  int64_t n = numElements(op->getResult(0));
  return n < 0 ? -1 : perElement * n;
}

} // namespace

ModelStats computeStats(ModuleOp module, int64_t batch, int64_t seq) {
  ModelStats stats;
  module.walk([&](Operation *op) {
    if (isa<ModuleOp, func::FuncOp, func::ReturnOp>(op)) return;
    if (auto c = dyn_cast<ConstantOp>(op)) {
      ++stats.constants;
      auto type = cast<RankedTensorType>(c.getType());
      int64_t n = type.getNumElements();
      Type et = type.getElementType();
      int64_t bits = et.isIntOrFloat() ? et.getIntOrFloatBitWidth() : 0;
      stats.weightBytesByDtype[dtypeName(et)] += bits == 1 ? n : n * bits / 8;
      if (isa<FloatType>(et) && n > 1) stats.parameters += n;
      return;
    }
    stats.opCounts[op->getName().getStringRef().str()]++;
  });

  // FLOPs on a shape-bound copy.
  OwningOpRef<ModuleOp> copy = cast<ModuleOp>(module->clone());
  copy->walk([&](func::FuncOp func) {
    if (func.getBody().empty()) return;
    for (BlockArgument arg : func.getBody().front().getArguments()) {
      auto t = dyn_cast<RankedTensorType>(arg.getType());
      if (!t) continue;
      SmallVector<int64_t> shape(t.getShape());
      for (size_t i = 0; i < shape.size(); ++i)
        if (shape[i] == kDynamic) shape[i] = i == 0 ? batch : seq;
      arg.setType(RankedTensorType::get(shape, t.getElementType()));
    }
  });
  PassManager pm(module.getContext(), ModuleOp::getOperationName());
  auto &fn = pm.nest<func::FuncOp>();
  fn.addPass(passes::createFoldConstants());
  fn.addPass(passes::createFoldShapes());
  fn.addPass(passes::createFoldConstants());
  // Diagnostics from the copy are not the user's concern here.
  ScopedDiagnosticHandler quiet(module.getContext(), [](Diagnostic &) { return success(); });
  (void)pm.run(*copy);
  copy->walk([&](Operation *op) {
    double f = opFlops(op);
    if (f < 0) { ++stats.opsWithUnknownShape; return; }
    if (f > 0) {
      stats.flops += f;
      stats.flopsByOp[op->getName().getStringRef().str()] += f;
    }
  });
  return stats;
}

} // namespace lathe::analysis
