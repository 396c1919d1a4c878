// transpose(transpose(x)) is one transpose; reshape(reshape(x)) is one reshape
// when the outer target does not copy dimensions of the intermediate shape
// that x does not share; a row lookup into the first rows of a table taken by
// positions is a lookup into the table itself:
//   gather(embedding(T, positions(x)), I, axis 0) = embedding(T, I)
// (transformers' cos_cached[:seq_len][position_ids]), which keeps position
// values flowing from one place, as incremental decoding needs.
#include "passes/Passes.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FOLDCHAINS
#include "passes/Passes.h.inc"

namespace {

struct MergeTransposes : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<TransposeOp>();
    if (!inner) return rewriter.notifyMatchFailure(op, "input is not a transpose");
    SmallVector<int64_t> perm;
    for (int64_t p : op.getPerm()) perm.push_back(inner.getPerm()[p]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, op.getType(), inner.getInput(),
                                             rewriter.getDenseI64ArrayAttr(perm));
    return success();
  }
};

struct MergeReshapes : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<ReshapeOp>();
    if (!inner) return rewriter.notifyMatchFailure(op, "input is not a reshape");
    auto target = getConstantInts(op.getShape());
    if (!target) return rewriter.notifyMatchFailure(op, "outer target is not constant");
    Value source = inner.getInput();
    int64_t sourceRank = cast<RankedTensorType>(source.getType()).getRank();
    for (size_t i = 0; i < target->size(); ++i) {
      if ((*target)[i] != 0) continue;
      if (int64_t(i) >= sourceRank || !(canonicalDim(inner.getResult(), i) == canonicalDim(source, i)))
        return rewriter.notifyMatchFailure(op, "outer target copies a dimension the source does not have");
    }
    rewriter.replaceOpWithNewOp<ReshapeOp>(op, op.getType(), source, op.getShape());
    return success();
  }
};

struct LookupThroughPositions : OpRewritePattern<GatherOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GatherOp op, PatternRewriter &rewriter) const override {
    auto rows = op.getInput().getDefiningOp<EmbeddingOp>();
    if (!rows || op.getAxis() != 0) return rewriter.notifyMatchFailure(op, "not an axis-0 gather of embedding rows");
    if (!rows.getIndices().getDefiningOp<PositionsOp>())
      return rewriter.notifyMatchFailure(op, "the rows are not looked up by positions");
    rewriter.replaceOpWithNewOp<EmbeddingOp>(op, op.getType(), rows.getTable(), op.getIndices());
    return success();
  }
};

struct FoldChainsPass : impl::FoldChainsBase<FoldChainsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<MergeTransposes, MergeReshapes, LookupThroughPositions>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace lathe::passes
