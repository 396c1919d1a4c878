// Every Softmax, ReduceMean, Erf and Tanh that survived the fusions gets a
// remark at its ONNX node naming the first fusion condition that failed.
#include "passes/Passes.h"
#include "passes/simplify/Matchers.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_EXPLAINUNFUSED
#include "passes/Passes.h.inc"

namespace {

/// For the second mean of a layer norm (over (x - mean)²) explain from the first.
std::string explainMean(ReduceMeanOp mean) {
  std::string why;
  Value base;
  if (auto pow = mean.getInput().getDefiningOp<PowOp>()) base = pow.getLhs();
  else if (auto mul = mean.getInput().getDefiningOp<MulOp>(); mul && mul.getLhs() == mul.getRhs()) base = mul.getLhs();
  if (base) {
    if (auto sub = base.getDefiningOp<SubOp>())
      if (auto first = sub.getRhs().getDefiningOp<ReduceMeanOp>()) {
        (void)matchLayerNorm(first, why);
        return "not fused into layer_norm: " + why;
      }
    (void)matchRmsNorm(mean, why);
    return "not fused into rms_norm: " + why;
  }
  (void)matchLayerNorm(mean, why);
  return "not fused into layer_norm: " + why;
}

struct ExplainUnfusedPass : impl::ExplainUnfusedBase<ExplainUnfusedPass> {
  void runOnOperation() override {
    getOperation().walk([](Operation *op) {
      std::string why;
      if (auto s = dyn_cast<SoftmaxOp>(op)) {
        (void)matchAttention(s, why);
        op->emitRemark() << "softmax not fused into attention: " << why;
      } else if (auto m = dyn_cast<ReduceMeanOp>(op)) {
        op->emitRemark() << "reduce_mean " << explainMean(m);
      } else if (auto e = dyn_cast<ErfOp>(op)) {
        (void)matchGeluErf(e, why);
        op->emitRemark() << "erf not fused into gelu: " << why;
      } else if (auto t = dyn_cast<TanhOp>(op)) {
        (void)matchGeluTanh(t, why);
        op->emitRemark() << "tanh not fused into gelu: " << why;
      }
    });
  }
};
} // namespace
} // namespace lathe::passes
