// GELU (exact erf form and tanh approximation) and SiLU → one op each.
#include "passes/Passes.h"
#include "passes/simplify/Matchers.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FUSEACTIVATIONS
#include "passes/Passes.h.inc"

namespace {

template <typename AnchorOp>
struct FuseActivation : OpRewritePattern<AnchorOp> {
  using Matcher = FailureOr<ActivationMatch> (*)(AnchorOp, std::string &);
  FuseActivation(MLIRContext *ctx, Matcher matcher, StringRef kind)
      : OpRewritePattern<AnchorOp>(ctx), matcher(matcher), kind(kind) {}
  LogicalResult matchAndRewrite(AnchorOp anchor, PatternRewriter &rewriter) const override {
    std::string why;
    auto m = matcher(anchor, why);
    if (failed(m)) return rewriter.notifyMatchFailure(anchor, why);
    rewriter.setInsertionPoint(m->root);
    Value fused;
    if (kind == "silu") fused = rewriter.create<SiluOp>(anchor.getLoc(), m->input);
    else fused = rewriter.create<GeluOp>(anchor.getLoc(), m->input, rewriter.getStringAttr(kind));
    rewriter.replaceOp(m->root, fused);
    return success();
  }
  Matcher matcher;
  std::string kind;
};

struct FuseActivationsPass : impl::FuseActivationsBase<FuseActivationsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseActivation<ErfOp>>(&getContext(), matchGeluErf, "none");
    patterns.add<FuseActivation<TanhOp>>(&getContext(), matchGeluTanh, "tanh");
    patterns.add<FuseActivation<SigmoidOp>>(&getContext(), matchSilu, "silu");
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace lathe::passes
