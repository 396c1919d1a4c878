// softmax(scale·Q·Kᵀ + mask)·V → lathe.attention. Heads stay in dimension 1;
// the surrounding reshapes/transposes are left to the chain folders.
#include "passes/Passes.h"
#include "passes/simplify/Matchers.h"
#include "passes/simplify/SimplifyUtils.h"

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

struct FuseAttentionPass : impl::FuseAttentionBase<FuseAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseSdpa>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
    refineTypes(getOperation());
  }
};
} // namespace
} // namespace lathe::passes
