// softmax(scale·Q·Kᵀ + mask)·V → lathe.attention. Heads stay in dimension 1;
// the surrounding reshapes/transposes are left to the chain folders.
//
// Additive masks that exporters build from shapes and the attention mask
// (Trilu/ConstantOfShape/Where/ScatterND chains that differ between
// transformers versions) are recognised by what they compute rather than by
// their structure: the mask's subgraph is evaluated on the host for concrete
// sizes and a padded attention mask, and when it equals "causal, plus -inf on
// padded keys" the op becomes causal with a [B,1,1,S] padding mask rebuilt
// from the attention mask, so no S×S tensor is left.
#include "passes/Passes.h"
#include "passes/simplify/Matchers.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FUSEATTENTION
#include "passes/Passes.h.inc"

namespace {

struct FuseSdpa : OpRewritePattern<SoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SoftmaxOp softmax, PatternRewriter &rewriter) const override {
    std::string why;
    auto m = matchAttention(softmax, why);
    if (failed(m)) return rewriter.notifyMatchFailure(softmax, why);
    rewriter.setInsertionPoint(m->root);
    Location loc = softmax.getLoc();
    Value key = m->key;
    if (m->keyIsTransposed)
      key = rewriter.create<TransposeOp>(loc, key, rewriter.getDenseI64ArrayAttr({0, 1, 3, 2}));
    auto attention = rewriter.create<AttentionOp>(
        loc, m->query, key, m->value, m->mask, rewriter.getI64IntegerAttr(m->numHeads),
        rewriter.getI64IntegerAttr(m->numKvHeads), rewriter.getF64FloatAttr(m->scale),
        rewriter.getBoolAttr(m->causal));
    rewriter.replaceOp(m->root, attention.getResult());
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Mask probing
//===----------------------------------------------------------------------===//

/// The padding pattern a probe feeds: row 0 unpadded, row 1 padded at the end.
bool isPadded(int64_t batch, int64_t key, int64_t seq) { return batch == 1 && key >= seq - 2; }

struct Probe {
  int64_t batch, seq;
};

/// Evaluates `mask` with every graph input bound to a constant (dims named
/// alike get the same size; values follow the padding pattern). Returns the
/// mask as a host tensor, or nullopt if it does not fold to a constant.
std::optional<HostTensor> evaluateMask(func::FuncOp func, Value mask, const Probe &probe) {
  SetVector<Operation *> slice;
  BackwardSliceOptions options;
  options.inclusive = true;
  if (Operation *def = mask.getDefiningOp()) getBackwardSlice(def, &slice, options);
  else return std::nullopt;
  SmallVector<Operation *> ops(slice.begin(), slice.end());
  llvm::sort(ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });

  MLIRContext *ctx = func.getContext();
  OpBuilder b(ctx);
  OwningOpRef<ModuleOp> scratch = ModuleOp::create(func.getLoc());
  b.setInsertionPointToEnd(scratch->getBody());
  auto probeFunc = b.create<func::FuncOp>(func.getLoc(), "probe", b.getFunctionType({}, {mask.getType()}));
  b.setInsertionPointToEnd(probeFunc.addEntryBlock());

  // Sizes per dim name: the first distinct name is the batch, the next the sequence.
  llvm::StringMap<int64_t> sizeOfName;
  int64_t nextSize[] = {probe.batch, probe.seq, 3, 4};
  int named = 0;
  // Named dims first, in order of appearance: "batch" then "sequence".
  for (BlockArgument arg : func.getArguments())
    if (auto names = func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(), "lathe.dims"))
      for (Attribute name : names)
        if (!cast<StringAttr>(name).getValue().empty() && sizeOfName.try_emplace(cast<StringAttr>(name).getValue(), 0).second)
          sizeOfName[cast<StringAttr>(name).getValue()] = nextSize[std::min(named++, 3)];
  IRMapping mapping;
  for (BlockArgument arg : func.getArguments()) {
    auto type = cast<RankedTensorType>(arg.getType());
    auto names = func.getArgAttrOfType<ArrayAttr>(arg.getArgNumber(), "lathe.dims");
    SmallVector<int64_t> shape(type.getShape());
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] != kDynamic) continue;
      std::string name = names && d < names.size() ? cast<StringAttr>(names[d]).str() : "";
      if (name.empty()) name = "#" + std::to_string(arg.getArgNumber()) + "." + std::to_string(d);
      auto [it, inserted] = sizeOfName.try_emplace(name, 0);
      if (inserted) it->second = nextSize[std::min(named++, 3)];
      shape[d] = it->second;
    }
    auto concrete = RankedTensorType::get(shape, type.getElementType());
    HostTensor value;
    value.shape = shape;
    value.elementType = type.getElementType();
    int64_t n = value.numElements();
    int64_t cols = shape.empty() ? 1 : shape.back();
    for (int64_t i = 0; i < n; ++i) {
      int64_t row = shape.size() == 2 ? i / cols : 0, col = i % cols;
      double v = shape.size() == 2 && isPadded(row, col, cols) ? 0 : 1;
      if (value.isFloat()) value.floats.push_back(v);
      else value.ints.push_back(int64_t(v));
    }
    if (!type.getElementType().isIntOrFloat()) return std::nullopt;
    mapping.map(arg, b.create<ConstantOp>(func.getLoc(), makeElementsAttr(concrete, value, "probe")).getResult());
  }
  for (Operation *op : ops) b.clone(*op, mapping);
  b.create<func::ReturnOp>(func.getLoc(), mapping.lookup(mask));

  PassManager pm(ctx, ModuleOp::getOperationName());
  auto &fn = pm.nest<func::FuncOp>();
  for (int i = 0; i < 2; ++i) {
    fn.addPass(createFoldShapes());
    fn.addPass(createFoldConstants());
  }
  ScopedDiagnosticHandler quiet(ctx, [](Diagnostic &) { return success(); });
  if (failed(pm.run(*scratch))) return std::nullopt;
  auto ret = cast<func::ReturnOp>(probeFunc.getBody().front().getTerminator());
  return readConstantValue(ret.getOperand(0), 1 << 20);
}

enum class MaskKind { Unknown, Padding, Causal, CausalAndPadding };

/// Classifies an evaluated [B|1, 1|H, S, S] additive mask.
MaskKind classify(const HostTensor &m, const Probe &probe, double &fill) {
  if (m.shape.size() != 4 || m.shape[2] != probe.seq || m.shape[3] != probe.seq) return MaskKind::Unknown;
  if (m.shape[0] != 1 && m.shape[0] != probe.batch) return MaskKind::Unknown;
  bool causal = true, padding = true, both = true;
  fill = 0;
  for (int64_t bIdx = 0; bIdx < probe.batch; ++bIdx)
    for (int64_t h = 0; h < m.shape[1]; ++h)
      for (int64_t i = 0; i < probe.seq; ++i)
        for (int64_t j = 0; j < probe.seq; ++j) {
          int64_t batchIndex = m.shape[0] == 1 ? 0 : bIdx;
          double v = m.getDouble(((batchIndex * m.shape[1] + h) * probe.seq + i) * probe.seq + j);
          bool masked = v <= -1e4;
          if (!masked && std::abs(v) > 1e-6) return MaskKind::Unknown;
          if (masked) fill = std::min(fill, v);
          bool pad = isPadded(bIdx, j, probe.seq);
          causal &= masked == (j > i);
          padding &= masked == pad;
          both &= masked == (j > i || pad);
        }
  if (causal) return MaskKind::Causal;
  if (padding) return MaskKind::Padding;
  if (both) return MaskKind::CausalAndPadding;
  return MaskKind::Unknown;
}

/// The one graph input whose values (not only its shape) the mask reads:
/// the walk does not follow the operands of ops that only read shapes.
Value paddingSource(func::FuncOp func, Value mask) {
  SmallVector<Value> worklist{mask};
  llvm::DenseSet<Value> visited;
  Value source;
  while (!worklist.empty()) {
    Value v = worklist.pop_back_val();
    if (!visited.insert(v).second) continue;
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (arg.getOwner()->getParentOp() != func) return {};
      if (source && source != v) return {};
      source = v;
      continue;
    }
    Operation *op = v.getDefiningOp();
    if (isa<ShapeOfOp, PositionsOp>(op)) continue;
    for (Value operand : op->getOperands()) worklist.push_back(operand);
  }
  return source;
}

/// (1 - float(mask[:, None, None, :])) · fill
Value buildPaddingMask(OpBuilder &b, Location loc, Value attentionMask, Type elementType, double fill) {
  auto type = cast<RankedTensorType>(attentionMask.getType());
  if (type.getRank() != 2) return {};
  Value m = b.create<UnsqueezeOp>(loc, attentionMask, b.getDenseI64ArrayAttr({1, 2}));
  if (!type.getElementType().isa<FloatType>() || type.getElementType() != elementType)
    m = b.create<CastOp>(loc, m, TypeAttr::get(elementType));
  auto scalar = RankedTensorType::get({}, elementType);
  Value one = b.create<ConstantOp>(loc, DenseElementsAttr::get(scalar, b.getFloatAttr(elementType, 1.0)));
  Value value = b.create<ConstantOp>(loc, DenseElementsAttr::get(scalar, b.getFloatAttr(elementType, fill)));
  Value inverted = b.create<SubOp>(loc, one, m);
  return b.create<MulOp>(loc, inverted, value);
}

void canonicalizeMasks(func::FuncOp func) {
  SmallVector<AttentionOp> ops;
  func.walk([&](AttentionOp op) {
    if (op.getMask() && !op.getCausal()) ops.push_back(op);
  });
  // Masks are usually shared by every layer: evaluate each once.
  llvm::DenseMap<Value, std::pair<MaskKind, double>> seen;
  for (AttentionOp op : ops) {
    Value mask = op.getMask();
    auto it = seen.find(mask);
    if (it == seen.end()) {
      MaskKind kind = MaskKind::Unknown;
      double fill = 0;
      for (Probe probe : {Probe{2, 5}, Probe{2, 3}}) {
        auto value = evaluateMask(func, mask, probe);
        double probeFill = 0;
        MaskKind k = value ? classify(*value, probe, probeFill) : MaskKind::Unknown;

        if (kind != MaskKind::Unknown && k != kind) k = MaskKind::Unknown;
        kind = k;
        fill = std::min(fill, probeFill);
        if (kind == MaskKind::Unknown) break;
      }
      it = seen.try_emplace(mask, kind, fill).first;
    }
    auto [kind, fill] = it->second;
    if (kind == MaskKind::Causal) {
      op.getMaskMutable().clear();
      op.setCausal(true);
    } else if (kind == MaskKind::CausalAndPadding) {
      Value source = paddingSource(func, mask);
      if (!source) continue;
      OpBuilder b(op);
      Type et = cast<RankedTensorType>(op.getQuery().getType()).getElementType();
      Value padding = buildPaddingMask(b, op.getLoc(), source, et, fill);
      if (!padding) continue;
      op.getMaskMutable().assign(padding);
      op.setCausal(true);
    }
  }
}

struct FuseAttentionPass : impl::FuseAttentionBase<FuseAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseSdpa>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
    canonicalizeMasks(getOperation());
    refineTypes(getOperation());
  }
};
} // namespace
} // namespace lathe::passes
