// Rotary position embeddings as exported (transformers' apply_rotary_pos_emb,
// GGUF's Llama after un-permuting heads):
//
//   x·cos + concat(-x[..., D/2:], x[..., :D/2])·sin      → lathe.rotary(x, cos, sin)
//
// Seven kernels (two slices, neg, concat, two muls, add) become one. Either
// operand order of the add and of each mul is accepted. The fused op computes
// the same products and sum, so it gives the same bits as the pattern.
#include "passes/Passes.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FUSEROTARY
#include "passes/Passes.h.inc"

namespace {

bool isF32(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && t.getElementType().isF32();
}

/// `slice` takes [start, end) of x's last axis with step 1 (an end past D counts as D).
bool slicesLastAxis(SliceOp slice, Value x, int64_t start, int64_t end) {
  if (!slice || slice.getInput() != x) return false;
  const int64_t rank = cast<RankedTensorType>(x.getType()).getRank(), d = cast<RankedTensorType>(x.getType()).getShape().back();
  auto starts = getConstantInts(slice.getStarts()), ends = getConstantInts(slice.getEnds());
  if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return false;
  auto axes = getConstantInts(slice.getAxes()), steps = getConstantInts(slice.getSteps());
  if (!axes || axes->size() != 1 || ((*axes)[0] != rank - 1 && (*axes)[0] != -1)) return false;
  if (!steps || steps->size() != 1 || (*steps)[0] != 1) return false;
  const int64_t e = (*ends)[0] >= d ? d : (*ends)[0];
  return (*starts)[0] == start && e == end;
}

/// The x of rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2]) on the last axis, or null.
Value rotateHalfOf(Value v) {
  auto concat = v.getDefiningOp<ConcatOp>();
  if (!concat || concat->getNumOperands() != 2) return {};
  auto neg = concat->getOperand(0).getDefiningOp<NegOp>();
  auto hi = neg ? neg.getInput().getDefiningOp<SliceOp>() : SliceOp();
  auto lo = concat->getOperand(1).getDefiningOp<SliceOp>();
  if (!hi || !lo) return {};
  Value x = hi.getInput();
  auto type = cast<RankedTensorType>(x.getType());
  const int64_t rank = type.getRank(), d = rank ? type.getShape().back() : ShapedType::kDynamic;
  if (rank < 1 || d == ShapedType::kDynamic || d % 2 || !isF32(x)) return {};
  const int64_t axis = concat.getAxis() < 0 ? concat.getAxis() + rank : concat.getAxis();
  if (axis != rank - 1) return {};
  if (!slicesLastAxis(hi, x, d / 2, d) || !slicesLastAxis(lo, x, 0, d / 2)) return {};
  return x;
}

/// cos/sin of one shape, last dim D, broadcasting to x without growing it; and
/// the product x·cos keeps x's shape (so dynamic dims that differ would not have been a rotary).
bool fitsRotary(Value x, Value cos, Value sin, Value product) {
  auto xt = cast<RankedTensorType>(x.getType());
  auto ct = dyn_cast<RankedTensorType>(cos.getType()), st = dyn_cast<RankedTensorType>(sin.getType());
  if (!ct || !st || !isF32(cos) || !isF32(sin) || ct.getShape() != st.getShape()) return false;
  if (ct.getRank() < 1 || ct.getRank() > xt.getRank() || ct.getShape().back() != xt.getShape().back()) return false;
  for (int64_t i = 0; i < ct.getRank(); ++i) {
    const int64_t c = ct.getShape()[size_t(ct.getRank() - 1 - i)], a = xt.getShape()[size_t(xt.getRank() - 1 - i)];
    if (c != 1 && c != ShapedType::kDynamic && a != ShapedType::kDynamic && c != a) return false;
  }
  return cast<RankedTensorType>(product.getType()).getShape() == xt.getShape();
}

struct FuseRotaryPattern : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rewriter) const override {
    for (int order = 0; order < 2; ++order) {
      auto direct = add->getOperand(order).getDefiningOp<MulOp>();
      auto rotated = add->getOperand(1 - order).getDefiningOp<MulOp>();
      if (!direct || !rotated) continue;
      for (int r = 0; r < 2; ++r) {
        Value x = rotateHalfOf(rotated->getOperand(r));
        if (!x) continue;
        Value sin = rotated->getOperand(1 - r);
        for (int dIndex = 0; dIndex < 2; ++dIndex) {
          if (direct->getOperand(dIndex) != x) continue;
          Value cos = direct->getOperand(1 - dIndex);
          if (!fitsRotary(x, cos, sin, direct.getResult()) || add.getType() != x.getType()) continue;
          rewriter.setInsertionPoint(add);
          rewriter.replaceOp(add, rewriter.create<RotaryOp>(add.getLoc(), x.getType(), x, cos, sin).getResult());
          return success();
        }
      }
    }
    return rewriter.notifyMatchFailure(add, "not x·cos + rotate_half(x)·sin");
  }
};

struct FuseRotaryPass : impl::FuseRotaryBase<FuseRotaryPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseRotaryPattern>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(patterns));
  }
};
} // namespace
} // namespace lathe::passes
