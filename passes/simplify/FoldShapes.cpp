// Shape computations exporters emit (Shape → Gather → Unsqueeze → Concat →
// Reshape) are evaluated symbolically; what is only known as "dimension k of
// tensor t" either maps onto the op's own input (0 in a reshape target, 1 in
// an expand target) or becomes the positions op.
#include "passes/Passes.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OperationSupport.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FOLDSHAPES
#include "passes/Passes.h.inc"

namespace {

bool isIntVector(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && t.getRank() <= 1 && t.getElementType().isInteger() && !t.getElementType().isInteger(1) &&
         t.hasStaticShape();
}

/// Replaces integer vectors whose symbolic value is fully constant.
bool foldConstantVectors(func::FuncOp func) {
  bool changed = false;
  SmallVector<Operation *> ops;
  func.walk([&](Operation *op) { ops.push_back(op); });
  for (Operation *op : ops) {
    if (isa<ConstantOp>(op) || op->getNumResults() != 1 || !isIntVector(op->getResult(0))) continue;
    auto sym = symbolicValue(op->getResult(0));
    if (!sym || !llvm::all_of(*sym, [](const SymbolicElement &e) { return e.isConstant(); })) continue;
    auto type = cast<RankedTensorType>(op->getResult(0).getType());
    HostTensor host;
    host.elementType = type.getElementType();
    host.shape.assign(type.getShape().begin(), type.getShape().end());
    for (auto &e : *sym) host.ints.push_back(*e.constant);
    if (host.numElements() != int64_t(host.ints.size())) continue;
    OpBuilder b(op);
    Value c = b.create<ConstantOp>(op->getLoc(), makeElementsAttr(type, host));
    op->getResult(0).replaceAllUsesWith(c);
    changed = true;
  }
  return changed;
}

/// Reshape targets: 0 where the target restates the input's own dimension,
/// -1 for one unknown, constants elsewhere.
bool foldReshapeTargets(func::FuncOp func) {
  bool changed = false;
  func.walk([&](ReshapeOp op) {
    if (getConstantInts(op.getShape())) return;
    auto sym = symbolicValue(op.getShape());
    if (!sym) return;
    int64_t inRank = cast<RankedTensorType>(op.getInput().getType()).getRank();
    SmallVector<int64_t> target;
    int unknown = 0;
    for (auto [i, e] : llvm::enumerate(*sym)) {
      if (e.isConstant()) {
        target.push_back(*e.constant);
        if (*e.constant == -1) ++unknown;
      } else if (e.isDim() && int64_t(i) < inRank && e.dim == canonicalDim(op.getInput(), i)) {
        target.push_back(0);
      } else {
        target.push_back(-1);
        ++unknown;
      }
    }
    if (unknown > 1) return;
    OpBuilder b(op);
    op.getShapeMutable().assign(makeI64Constant(b, op.getLoc(), target));
    changed = true;
  });
  return changed;
}

/// Expand targets: 1 where the target restates the input's own dimension.
bool foldExpandTargets(func::FuncOp func) {
  bool changed = false;
  func.walk([&](ExpandOp op) {
    if (getConstantInts(op.getShape())) return;
    auto sym = symbolicValue(op.getShape());
    if (!sym) return;
    auto in = cast<RankedTensorType>(op.getInput().getType());
    int64_t rank = std::max<int64_t>(sym->size(), in.getRank());
    SmallVector<int64_t> target;
    for (auto [i, e] : llvm::enumerate(*sym)) {
      int64_t inDim = int64_t(i) + rank - int64_t(sym->size()) - (rank - in.getRank());
      if (e.isConstant()) {
        target.push_back(*e.constant);
      } else if (e.isDim() && inDim >= 0 && in.getDimSize(inDim) != 1 && e.dim == canonicalDim(op.getInput(), inDim)) {
        target.push_back(1);
      } else {
        return;
      }
    }
    OpBuilder b(op);
    op.getShapeMutable().assign(makeI64Constant(b, op.getLoc(), target));
    changed = true;
  });
  return changed;
}

/// The dimension a scalar/1-element integer value stands for, if any.
std::optional<DimRef> scalarDim(Value v) {
  auto sym = symbolicValue(v);
  if (!sym || sym->size() != 1 || !(*sym)[0].isDim()) return std::nullopt;
  return (*sym)[0].dim;
}

/// Range(0, dim, 1) → positions(dim).
bool foldRanges(func::FuncOp func) {
  bool changed = false;
  func.walk([&](RangeOp op) {
    auto start = getConstantScalar(op.getStart()), delta = getConstantScalar(op.getDelta());
    auto dim = scalarDim(op.getLimit());
    if (!start || !delta || *start != 0 || *delta != 1 || !dim) return;
    OpBuilder b(op);
    Value pos = b.create<PositionsOp>(op.getLoc(), dim->value, b.getI64IntegerAttr(dim->dim));
    Type et = cast<RankedTensorType>(op.getType()).getElementType();
    if (!et.isInteger(64)) pos = b.create<CastOp>(op.getLoc(), pos, TypeAttr::get(et));
    op.getResult().replaceAllUsesWith(pos);
    op.erase();
    changed = true;
  });
  return changed;
}

/// True if `host` counts 0, 1, 2, … along `axis` and every other dim is 1
/// (a position_ids buffer).
bool isArangeAlong(const HostTensor &host, int64_t axis) {
  for (size_t d = 0; d < host.shape.size(); ++d)
    if (int64_t(d) != axis && host.shape[d] != 1) return false;
  for (int64_t i = 0, n = host.numElements(); i < n; ++i)
    if (host.getInt(i) != i) return false;
  return true;
}

/// table[…, 0:dim, …] of a constant → gather(table, positions(dim)) along
/// that axis; a position_ids buffer sliced this way is positions itself.
bool foldCacheSlices(func::FuncOp func) {
  bool changed = false;
  func.walk([&](SliceOp op) {
    auto starts = getConstantInts(op.getStarts()), axes = getConstantInts(op.getAxes());
    auto steps = getConstantInts(op.getSteps());
    if (!op.getInput().getDefiningOp<ConstantOp>() || !starts || !axes || !steps || axes->size() != 1 ||
        (*starts)[0] != 0 || (*steps)[0] != 1)
      return;
    auto table = cast<RankedTensorType>(op.getInput().getType());
    auto axis = normalizeAxis((*axes)[0], table.getRank());
    auto dim = scalarDim(op.getEnds());
    if (!axis || !dim) return;
    OpBuilder b(op);
    Location loc = op.getLoc();
    Value pos = b.create<PositionsOp>(loc, dim->value, b.getI64IntegerAttr(dim->dim));
    Value result;
    auto host = readConstantValue(op.getInput(), 1 << 20);
    if (host && !host->isFloat() && isArangeAlong(*host, *axis)) {
      SmallVector<int64_t> unitAxes;
      for (int64_t d = 0; d < table.getRank(); ++d)
        if (d != *axis) unitAxes.push_back(d);
      result = unitAxes.empty() ? pos : b.create<UnsqueezeOp>(loc, pos, b.getDenseI64ArrayAttr(unitAxes)).getResult();
      Type et = table.getElementType();
      if (!et.isInteger(64)) result = b.create<CastOp>(loc, result, TypeAttr::get(et));
    } else if (*axis == 0 && table.getRank() == 2 && isa<FloatType>(table.getElementType())) {
      result = b.create<EmbeddingOp>(loc, op.getInput(), pos);
    } else {
      result = b.create<GatherOp>(loc, op.getInput(), pos, b.getI64IntegerAttr(*axis));
    }
    op.getResult().replaceAllUsesWith(result);
    op.erase();
    changed = true;
  });
  return changed;
}

struct FoldShapesPass : impl::FoldShapesBase<FoldShapesPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    // Type refinement can make more shapes known, so a round that only
    // refined types still counts as progress.
    for (int round = 0; round < 16; ++round) {
      OperationFingerPrint before(func);
      foldConstantVectors(func);
      foldReshapeTargets(func);
      foldExpandTargets(func);
      foldRanges(func);
      foldCacheSlices(func);
      refineTypes(func);
      (void)foldAndClean(func);
      if (OperationFingerPrint(func) == before) break;
    }
  }
};
} // namespace
} // namespace lathe::passes
