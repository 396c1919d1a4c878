// Decomposed LayerNorm (opset < 17 exports) and RMSNorm → one op each.
#include "passes/Passes.h"
#include "passes/simplify/Matchers.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FUSENORMS
#include "passes/Passes.h.inc"

namespace {

/// γ = 1 when the model has none.
Value onesLike(PatternRewriter &rewriter, Location loc, Value x) {
  auto t = cast<RankedTensorType>(x.getType());
  auto type = RankedTensorType::get({t.getShape().back()}, t.getElementType());
  return rewriter.create<ConstantOp>(loc, DenseElementsAttr::get(type, rewriter.getFloatAttr(t.getElementType(), 1.0)));
}

/// γ/β as 1-D vectors ([1,…,1,N] constants are flattened).
Value flatVector(PatternRewriter &rewriter, Location loc, Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  if (t.getRank() == 1) return v;
  auto flat = RankedTensorType::get({t.getShape().back()}, t.getElementType());
  auto host = readConstantValue(v, int64_t(1) << 24);
  host->shape = {t.getShape().back()};
  return rewriter.create<ConstantOp>(loc, makeElementsAttr(flat, *host, "norm_param"));
}

/// A ReduceMean that starts a decomposed norm: layer norm (mean of x) or
/// RMS norm (mean of x²), tried in that order.
struct FuseNorm : OpRewritePattern<ReduceMeanOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReduceMeanOp mean, PatternRewriter &rewriter) const override {
    std::string layerWhy, rmsWhy;
    bool rms = false;
    auto m = matchLayerNorm(mean, layerWhy);
    if (failed(m)) {
      m = matchRmsNorm(mean, rmsWhy);
      rms = true;
    }
    if (failed(m)) return rewriter.notifyMatchFailure(mean, "layer norm: " + layerWhy + "; rms norm: " + rmsWhy);
    rewriter.setInsertionPoint(m->root);
    Location loc = mean.getLoc();
    Value scale = m->scale ? flatVector(rewriter, loc, m->scale) : onesLike(rewriter, loc, m->input);
    Value fused;
    if (rms) {
      fused = rewriter.create<RmsNormOp>(loc, m->input, scale, rewriter.getF64FloatAttr(m->epsilon));
    } else {
      Value bias = m->bias ? flatVector(rewriter, loc, m->bias) : Value();
      fused = rewriter.create<LayerNormOp>(loc, m->input, scale, bias, rewriter.getF64FloatAttr(m->epsilon),
                                           rewriter.getI64IntegerAttr(-1));
    }
    rewriter.replaceOp(m->root, fused);
    return success();
  }
};

struct FuseNormsPass : impl::FuseNormsBase<FuseNormsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseNorm>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace lathe::passes
