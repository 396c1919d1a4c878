// MatMul/Gemm with a constant weight (+ a constant bias Add) → lathe.linear
// with the weight stored [out_features, in_features]. Hugging Face Conv1D
// (flatten → addmm → unflatten) becomes a linear on the unflattened input.
#include "passes/Passes.h"
#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_FUSELINEAR
#include "passes/Passes.h.inc"

namespace {

std::string nameOf(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc)) return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(inner)) return name.getName().str();
  return "weight";
}

std::string blobKeyFor(Location loc, StringRef suffix) {
  std::string key;
  for (char c : nameOf(loc) + "." + suffix.str())
    key += (std::isalnum((unsigned char)c) || c == '_' || c == '.') ? c : '_';
  while (!key.empty() && (key[0] == '_' || key[0] == '.')) key.erase(0, 1);
  if (key.empty() || std::isdigit((unsigned char)key[0])) key = "w_" + key;
  return key;
}

/// A constant bias that broadcasts only along the last dimension: [N] or [1,…,1,N].
Value biasVector(PatternRewriter &rewriter, Value bias, int64_t outFeatures, Location loc) {
  auto c = bias.getDefiningOp<ConstantOp>();
  if (!c) return {};
  auto type = cast<RankedTensorType>(bias.getType());
  if (!type.hasStaticShape() || type.getRank() < 1 || type.getShape().back() != outFeatures ||
      type.getNumElements() != outFeatures)
    return {};
  if (type.getRank() == 1) return bias;
  auto flat = RankedTensorType::get({outFeatures}, type.getElementType());
  ElementsAttr value = c.getValue();
  if (auto dense = dyn_cast<DenseElementsAttr>(value)) return rewriter.create<ConstantOp>(loc, dense.reshape(flat));
  auto host = readHostTensor(value, int64_t(1) << 24);
  if (!host) return {};
  host->shape = {outFeatures};
  return rewriter.create<ConstantOp>(loc, makeElementsAttr(flat, *host, blobKeyFor(loc, "bias")));
}

/// matmul(x, W) with W a constant [K, N] (or transpose(W') with W' [N, K]).
struct MatMulToLinear : OpRewritePattern<MatMulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatMulOp op, PatternRewriter &rewriter) const override {
    Value x = op.getLhs();
    if (cast<RankedTensorType>(x.getType()).getRank() < 2)
      return rewriter.notifyMatchFailure(op, "input has rank < 2");
    Value weight;
    if (auto t = op.getRhs().getDefiningOp<TransposeOp>()) {
      if (t.getPerm() == ArrayRef<int64_t>{1, 0} && t.getInput().getDefiningOp<ConstantOp>())
        weight = t.getInput();
    }
    if (!weight) {
      auto c = op.getRhs().getDefiningOp<ConstantOp>();
      if (!c) return rewriter.notifyMatchFailure(op, "weight is not a constant");
      if (cast<RankedTensorType>(c.getType()).getRank() != 2)
        return rewriter.notifyMatchFailure(op, "weight is not 2-D");
      auto transposed = transposeWeight(c.getValue(), blobKeyFor(op.getLoc(), "weight"));
      if (!transposed) return rewriter.notifyMatchFailure(op, "weight cannot be transposed");
      weight = rewriter.create<ConstantOp>(c.getLoc(), *transposed);
    }
    int64_t outFeatures = cast<RankedTensorType>(weight.getType()).getDimSize(0);
    // A single constant Add after the matmul is the bias.
    Operation *root = op;
    Value bias;
    if (op->hasOneUse()) {
      if (auto add = dyn_cast<AddOp>(*op->user_begin())) {
        Value other = add.getLhs() == op.getResult() ? add.getRhs() : add.getLhs();
        if ((bias = biasVector(rewriter, other, outFeatures, add.getLoc()))) root = add;
      }
    }
    rewriter.setInsertionPoint(root);
    auto linear = rewriter.create<LinearOp>(op.getLoc(), x, weight, bias);
    if (linear.getType() != root->getResult(0).getType() &&
        !areCompatibleResultTypes(TypeRange{linear.getType()}, TypeRange{root->getResult(0).getType()})) {
      rewriter.eraseOp(linear);
      return rewriter.notifyMatchFailure(op, "result type would change");
    }
    rewriter.replaceOp(root, linear.getResult());
    return success();
  }
};

/// reshape(linear(reshape(x, [-1, K])), [d0(x), …, d(r-2)(x), N]) → linear
/// on x with its leading dims kept: the flatten/unflatten pair Hugging Face
/// Conv1D and Gemm exports put around a layer. x may carry the K features
/// split over several trailing dims (merged heads); they are merged with a
/// reshape that keeps the leading dims.
struct UnflattenLinear : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op, PatternRewriter &rewriter) const override {
    auto linear = op.getInput().getDefiningOp<LinearOp>();
    if (!linear || !linear->hasOneUse()) return rewriter.notifyMatchFailure(op, "input is not a single-use linear");
    auto flatten = linear.getInput().getDefiningOp<ReshapeOp>();
    if (!flatten || cast<RankedTensorType>(flatten.getType()).getRank() != 2)
      return rewriter.notifyMatchFailure(op, "linear input is not a flatten to 2-D");
    Value x = flatten.getInput();
    auto xType = cast<RankedTensorType>(x.getType());
    int64_t inFeatures = cast<RankedTensorType>(linear.getWeight().getType()).getDimSize(1);
    int64_t outFeatures = cast<RankedTensorType>(linear.getWeight().getType()).getDimSize(0);
    auto target = symbolicValue(op.getShape());
    if (!target || target->size() < 2 || int64_t(target->size()) > xType.getRank())
      return rewriter.notifyMatchFailure(op, "target is not x's leading dims + [out_features]");
    int64_t leading = target->size() - 1;
    for (int64_t i = 0; i < leading; ++i) {
      const SymbolicElement &e = (*target)[i];
      bool ok = (e.isConstant() && *e.constant == xType.getDimSize(i) && *e.constant != kDynamic) ||
                (e.isDim() && e.dim == canonicalDim(x, i));
      if (!ok) return rewriter.notifyMatchFailure(op, "target does not restate x's leading dims");
    }
    int64_t trailing = 1;
    for (int64_t i = leading; i < xType.getRank(); ++i) {
      if (xType.getDimSize(i) == kDynamic) return rewriter.notifyMatchFailure(op, "x's feature dims are dynamic");
      trailing *= xType.getDimSize(i);
    }
    if (trailing != inFeatures) return rewriter.notifyMatchFailure(op, "x's trailing dims are not in_features");
    const SymbolicElement &last = target->back();
    if (!last.isConstant() || (*last.constant != outFeatures && *last.constant != -1))
      return rewriter.notifyMatchFailure(op, "target's last dim is not out_features");
    if (xType.getRank() != int64_t(target->size())) {
      SmallVector<int64_t> merge(leading, 0);
      merge.push_back(inFeatures);
      x = rewriter.create<ReshapeOp>(flatten.getLoc(), x, makeI64Constant(rewriter, flatten.getLoc(), merge));
    }
    auto fused = rewriter.create<LinearOp>(linear.getLoc(), x, linear.getWeight(), linear.getBias());
    rewriter.replaceOp(op, fused.getResult());
    rewriter.eraseOp(linear);
    return success();
  }
};

/// matmul(a [..., M, 1], b [..., 1, N]) is an outer product: a broadcast
/// multiply (rotary embeddings compute inv_freq ⊗ positions this way).
struct OuterProductToMul : OpRewritePattern<MatMulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatMulOp op, PatternRewriter &rewriter) const override {
    auto a = cast<RankedTensorType>(op.getLhs().getType()), b = cast<RankedTensorType>(op.getRhs().getType());
    if (a.getRank() < 2 || b.getRank() < 2 || a.getShape().back() != 1 || b.getDimSize(b.getRank() - 2) != 1)
      return rewriter.notifyMatchFailure(op, "contraction dimension is not 1");
    auto mul = rewriter.create<MulOp>(op.getLoc(), op.getLhs(), op.getRhs());
    if (!areCompatibleResultTypes(TypeRange{mul.getType()}, TypeRange{op.getType()})) {
      rewriter.eraseOp(mul);
      return rewriter.notifyMatchFailure(op, "broadcast shape differs");
    }
    rewriter.replaceOp(op, mul.getResult());
    return success();
  }
};

/// Rows [begin, begin + count) of a constant [rows, …] tensor, byte-wise.
std::optional<ElementsAttr> sliceRows(ElementsAttr value, int64_t begin, int64_t count, StringRef blobName) {
  auto type = cast<RankedTensorType>(value.getType());
  Type et = type.getElementType();
  if (!type.hasStaticShape() || !et.isIntOrFloat() || et.getIntOrFloatBitWidth() % 8) return std::nullopt;
  SmallVector<int64_t> shape(type.getShape());
  size_t rowBytes = et.getIntOrFloatBitWidth() / 8;
  for (size_t d = 1; d < shape.size(); ++d) rowBytes *= shape[d];
  ArrayRef<char> src;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob) return std::nullopt;
    src = blob->getData();
  } else if (auto dense = dyn_cast<DenseElementsAttr>(value); dense && !dense.isSplat() && !et.isInteger(1)) {
    src = dense.getRawData();
  } else {
    return std::nullopt;
  }
  if (src.size() != rowBytes * shape[0]) return std::nullopt;
  shape[0] = count;
  return makeResourceAttr(RankedTensorType::get(shape, et), blobName,
                          src.slice(begin * rowBytes, count * rowBytes));
}

/// split(linear(x, W, b), last axis) → one linear per piece with the matching
/// rows of W and b (GPT-2's fused c_attn), so each projection is its own layer
/// for compression.
struct SplitLinear : OpRewritePattern<SplitOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SplitOp split, PatternRewriter &rewriter) const override {
    auto linear = split.getInput().getDefiningOp<LinearOp>();
    if (!linear || !linear->hasOneUse()) return rewriter.notifyMatchFailure(split, "input is not a single-use linear");
    int64_t rank = cast<RankedTensorType>(split.getInput().getType()).getRank();
    if (normalizeAxis(split.getAxis(), rank) != rank - 1) return rewriter.notifyMatchFailure(split, "not split along features");
    auto weight = linear.getWeight().getDefiningOp<ConstantOp>();
    auto bias = linear.getBias() ? linear.getBias().getDefiningOp<ConstantOp>() : ConstantOp();
    if (!weight || (linear.getBias() && !bias)) return rewriter.notifyMatchFailure(split, "weights are not constant");
    SmallVector<Value> pieces;
    int64_t begin = 0;
    for (auto [i, size] : llvm::enumerate(split.getSizes())) {
      std::string key = blobKeyFor(linear.getLoc(), "part" + std::to_string(i));
      auto w = sliceRows(weight.getValue(), begin, size, key + ".weight");
      std::optional<ElementsAttr> b;
      if (bias) b = sliceRows(bias.getValue(), begin, size, key + ".bias");
      if (!w || (bias && !b)) return rewriter.notifyMatchFailure(split, "weights cannot be sliced");
      Value wv = rewriter.create<ConstantOp>(weight.getLoc(), *w);
      Value bv = bias ? rewriter.create<ConstantOp>(bias.getLoc(), *b).getResult() : Value();
      pieces.push_back(rewriter.create<LinearOp>(linear.getLoc(), linear.getInput(), wv, bv));
      begin += size;
    }
    rewriter.replaceOp(split, pieces);
    rewriter.eraseOp(linear);
    return success();
  }
};

struct FuseLinearPass : impl::FuseLinearBase<FuseLinearPass> {
  void runOnOperation() override {
    // Two rounds: unflattening needs the linear ops the first round makes.
    RewritePatternSet toLinear(&getContext());
    toLinear.add<MatMulToLinear, OuterProductToMul>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(toLinear));
    RewritePatternSet unflatten(&getContext());
    unflatten.add<UnflattenLinear, SplitLinear>(&getContext());
    (void)applyPatternsAndFoldGreedily(getOperation(), std::move(unflatten));
    refineTypes(getOperation());
  }
};
} // namespace
} // namespace lathe::passes
