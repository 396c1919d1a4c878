// lathe-low-rank: a linear y = x·Wᵀ + b becomes y = (x·Aᵀ)·Bᵀ + b with
// W ≈ B·A of rank r (passes/lowrank/LowRankMath.h), when r·(m + n) < m·n.
#include "passes/Passes.h"
#include "passes/lowrank/LowRankMath.h"
#include "passes/quantize/QuantizeUtils.h"

#include "dialects/lathe/LatheDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_LOWRANK
#include "passes/Passes.h.inc"

namespace {

struct LowRankPass : impl::LowRankBase<LowRankPass> {
  using LowRankBase::LowRankBase;

  void runOnOperation() override {
    std::string bad;
    if (method != "svd" && method != "asvd") bad = "unknown method '" + method + "' (svd or asvd)";
    else if (rank < 0) bad = "rank must be >= 0";
    else if (!(energy >= 0 && energy <= 1)) bad = "energy must be in (0, 1]";
    else if (rank == 0 && energy == 0 && !(paramRatio > 0 && paramRatio < 1)) bad = "param-ratio must be in (0, 1)";
    else if (dampening < 0) bad = "dampening must be non-negative";
    if (!bad.empty()) {
      getOperation().emitError("lathe-low-rank: ") << bad;
      return signalPassFailure();
    }
    SmallVector<LinearOp> layers;
    getOperation().walk([&](LinearOp op) {
      std::string name = quantize::opName(op);
      if (quantize::matchesAny(name, include, true) && !quantize::matchesAny(name, exclude, false) &&
          !op->hasAttr("lathe.lowrank") && !op->hasAttr("lathe.lowrank_factor") && !op->hasAttr("lathe.lowrank_skipped"))
        layers.push_back(op);
    });
    for (LinearOp op : layers)
      if (failed(rewrite(op))) return signalPassFailure();
  }

  LogicalResult rewrite(LinearOp op) {
    auto weightOp = op.getWeight().getDefiningOp<ConstantOp>();
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    if (!weightOp || !type.getElementType().isF32() || !type.hasStaticShape()) {
      op.emitRemark("not factorized: its weight is not a constant f32 tensor");
      return success();
    }
    if (!weightOp->hasOneUse()) {
      // e.g. an output head tied to the embedding table: the table stays, so the factors would only add bytes.
      const char *why = "its weight is shared with another op (a tied embedding?): factors would add bytes, not save them";
      op.emitRemark("not factorized: ") << why;
      op->setAttr("lathe.lowrank_skipped", OpBuilder(op).getStringAttr(why));
      return success();
    }
    auto weights = quantize::readF32(weightOp.getValue());
    if (!weights) return op.emitError("cannot read the weight of this linear layer");
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    std::optional<std::vector<float>> gram;
    if (method == "asvd") {
      gram = quantize::calibrationArray(op, "xtx", in * in);
      if (!gram) {
        if (onlyCalibrated) return success();
        return op.emitError("method asvd needs this layer's calibration XᵀX (lathe.calibration xtx of ")
               << in << "x" << in << "): compile with --calibration";
      }
    }
    OpBuilder b(op);
    // A rank that saves nothing is refused before any decomposition when it is known up front.
    auto skip = [&](int64_t r) {
      std::string why = "rank " + std::to_string(r) + " saves nothing: r*(m+n) = " + std::to_string(r * (out + in)) +
                        " >= m*n = " + std::to_string(out * in);
      op.emitRemark("not factorized: ") << why;
      op->setAttr("lathe.lowrank_skipped", b.getStringAttr(why));
      return success();
    };
    if (rank > 0 && rank * (out + in) >= out * in) return skip(rank);
    lowrank::RankRule rule{rank, energy, 1.0 - paramRatio};
    lowrank::Factors f = lowrank::factorize(weights->data(), out, in, gram ? gram->data() : nullptr, rule, dampening);
    if (!f.error.empty()) return op.emitError("low-rank: ") << f.error;
    if (f.rank * (out + in) >= out * in) return skip(f.rank);
    const std::string base = quantize::opName(op);
    auto at = RankedTensorType::get({f.rank, in}, b.getF32Type()), bt = RankedTensorType::get({out, f.rank}, b.getF32Type());
    Location factorLoc = NameLoc::get(b.getStringAttr(base + ".lr_a"));
    Value a = b.create<ConstantOp>(factorLoc, at, quantize::f32Resource(at, base + ".lr_a", f.a));
    Value bw = b.create<ConstantOp>(op.getLoc(), bt, quantize::f32Resource(bt, base + ".lr_b", f.b));
    auto first = b.create<LinearOp>(factorLoc, op.getInput(), a, Value());
    first->setAttr("lathe.lowrank_factor", b.getStringAttr(base));
    auto second = b.create<LinearOp>(op.getLoc(), op.getType(), first.getResult(), bw, op.getBias());
    SmallVector<NamedAttribute> record{
        b.getNamedAttr("method", b.getStringAttr(method + "-r" + std::to_string(f.rank))),
        b.getNamedAttr("rank", b.getI64IntegerAttr(f.rank)),
        b.getNamedAttr("energy", b.getF64FloatAttr(f.energyKept)),
        b.getNamedAttr("bytes_before", b.getI64IntegerAttr(out * in * 4)),
        b.getNamedAttr("bytes_after", b.getI64IntegerAttr(f.rank * (out + in) * 4)),
        b.getNamedAttr("weight_error", b.getF64FloatAttr(f.weightError))};
    if (f.outputError >= 0) record.push_back(b.getNamedAttr("output_error_xtx", b.getF64FloatAttr(f.outputError)));
    second->setAttr("lathe.lowrank", b.getDictionaryAttr(record));
    // The first factor sees the layer's input: its statistics stay valid for it.
    if (auto stats = op->getAttr("lathe.calibration")) first->setAttr("lathe.calibration", stats);
    op.replaceAllUsesWith(second.getResult());
    op.erase();
    if (weightOp->use_empty()) weightOp->erase();
    return success();
  }
};

} // namespace
} // namespace lathe::passes
