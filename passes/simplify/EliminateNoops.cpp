// Ops that change nothing at run time: Identity and Dropout, casts to the
// same type, reshapes/expands/slices that keep the shape, identity transposes.
#include "passes/Passes.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_ELIMINATENOOPS
#include "passes/Passes.h.inc"

namespace {

bool sameShapeClass(Value a, Value b) {
  auto ta = cast<RankedTensorType>(a.getType()), tb = cast<RankedTensorType>(b.getType());
  return areCompatibleResultTypes(TypeRange{ta}, TypeRange{tb});
}

/// Replaces `op` by `input` when the types agree (up to dynamic dims).
LogicalResult forward(PatternRewriter &rewriter, Operation *op, Value input) {
  if (!sameShapeClass(input, op->getResult(0)))
    return rewriter.notifyMatchFailure(op, "input and result shapes differ");
  rewriter.replaceOp(op, input);
  return success();
}

struct DropIdentity : OpRewritePattern<IdentityOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(IdentityOp op, PatternRewriter &rewriter) const override {
    return forward(rewriter, op, op.getInput());
  }
};

struct DropSameTypeCast : OpRewritePattern<CastOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CastOp op, PatternRewriter &rewriter) const override {
    if (cast<RankedTensorType>(op.getInput().getType()).getElementType() != op.getTo())
      return rewriter.notifyMatchFailure(op, "cast changes the element type");
    return forward(rewriter, op, op.getInput());
  }
};

/// A reshape whose target copies (0) or restates every static input dim.
struct DropNoopReshape : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op, PatternRewriter &rewriter) const override {
    auto in = cast<RankedTensorType>(op.getInput().getType());
    auto target = getConstantInts(op.getShape());
    if (!target) return rewriter.notifyMatchFailure(op, "target is not constant");
    if (int64_t(target->size()) != in.getRank()) return rewriter.notifyMatchFailure(op, "rank changes");
    int64_t inferred = 0;
    for (int64_t i = 0; i < in.getRank(); ++i) {
      int64_t t = (*target)[i];
      if (t == 0 || (t > 0 && t == in.getDimSize(i))) continue;
      if (t == -1) { ++inferred; continue; }
      return rewriter.notifyMatchFailure(op, "a dimension changes");
    }
    // One inferred dim with every other dim kept must equal the input's.
    if (inferred > 1) return rewriter.notifyMatchFailure(op, "more than one inferred dimension");
    return forward(rewriter, op, op.getInput());
  }
};

struct DropNoopTranspose : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op, PatternRewriter &rewriter) const override {
    for (auto [i, p] : llvm::enumerate(op.getPerm()))
      if (int64_t(i) != p) return rewriter.notifyMatchFailure(op, "permutation is not the identity");
    return forward(rewriter, op, op.getInput());
  }
};

struct DropNoopExpand : OpRewritePattern<ExpandOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpandOp op, PatternRewriter &rewriter) const override {
    auto in = cast<RankedTensorType>(op.getInput().getType());
    auto target = getConstantInts(op.getShape());
    if (!target || int64_t(target->size()) > in.getRank())
      return rewriter.notifyMatchFailure(op, "target is not constant or adds dimensions");
    int64_t offset = in.getRank() - target->size();
    for (size_t i = 0; i < target->size(); ++i) {
      int64_t t = (*target)[i], d = in.getDimSize(offset + i);
      if (t != 1 && t != d) return rewriter.notifyMatchFailure(op, "a dimension is broadcast");
    }
    return forward(rewriter, op, op.getInput());
  }
};

struct DropNoopSlice : OpRewritePattern<SliceOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SliceOp op, PatternRewriter &rewriter) const override {
    auto in = cast<RankedTensorType>(op.getInput().getType());
    auto starts = getConstantInts(op.getStarts()), ends = getConstantInts(op.getEnds());
    auto axes = getConstantInts(op.getAxes()), steps = getConstantInts(op.getSteps());
    if (!starts || !ends || !axes || !steps) return rewriter.notifyMatchFailure(op, "parameters are not constant");
    for (size_t i = 0; i < axes->size(); ++i) {
      auto axis = normalizeAxis((*axes)[i], in.getRank());
      if (!axis) return failure();
      int64_t dim = in.getDimSize(*axis);
      bool fullEnd = (*ends)[i] >= (int64_t(1) << 31) || (dim != kDynamic && (*ends)[i] >= dim);
      if ((*starts)[i] != 0 || (*steps)[i] != 1 || !fullEnd)
        return rewriter.notifyMatchFailure(op, "the slice drops elements");
    }
    return forward(rewriter, op, op.getInput());
  }
};

struct EliminateNoopsPass : impl::EliminateNoopsBase<EliminateNoopsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DropIdentity, DropSameTypeCast, DropNoopReshape, DropNoopTranspose, DropNoopExpand,
                 DropNoopSlice>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
    refineTypes(getOperation());
  }
};
} // namespace
} // namespace lathe::passes
