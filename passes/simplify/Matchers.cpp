#include "passes/simplify/Matchers.h"

#include "dialects/lathe/ShapeHelpers.h"
#include "passes/simplify/SimplifyUtils.h"

#include <cmath>

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {

Operation *singleUser(Value value) {
  if (!value.hasOneUse()) return nullptr;
  return *value.getUsers().begin();
}

namespace {

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }

/// For a commutative binary op, the operand that is not `known`.
Value otherOperand(Operation *op, Value known) {
  if (op->getNumOperands() != 2) return {};
  if (op->getOperand(0) == known) return op->getOperand(1);
  if (op->getOperand(1) == known) return op->getOperand(0);
  return {};
}

bool isScalarConst(Value v, double expected, double tol = 1e-3) {
  auto c = getConstantScalar(v);
  return c && std::abs(*c - expected) <= tol * std::max(1.0, std::abs(expected));
}

bool isLastAxisMean(ReduceMeanOp mean) {
  auto axes = mean.getAxes();
  int64_t rank = rankOf(mean.getInput());
  return mean.getKeepdims() && axes.size() == 1 && normalizeAxis(axes[0], rank) == rank - 1;
}

/// x² as Pow(x, 2) or Mul(x, x); returns x.
Value squaredBase(Value v) {
  if (auto pow = v.getDefiningOp<PowOp>())
    if (isScalarConst(pow.getRhs(), 2.0, 1e-9)) return pow.getLhs();
  if (auto mul = v.getDefiningOp<MulOp>())
    if (mul.getLhs() == mul.getRhs()) return mul.getLhs();
  return {};
}

/// A 1-D constant of length n (γ or β), or the same as [1,…,1,n].
bool isFeatureVector(Value v, int64_t n) {
  if (!v || !v.getDefiningOp<ConstantOp>()) return false;
  auto t = cast<RankedTensorType>(v.getType());
  return t.hasStaticShape() && t.getRank() >= 1 && t.getShape().back() == n && t.getNumElements() == n;
}

/// Optional trailing ·γ and +β on `root`.
void matchAffine(NormMatch &m, int64_t features, bool allowBias) {
  if (Operation *user = singleUser(m.root->getResult(0))) {
    if (auto mul = dyn_cast<MulOp>(user)) {
      Value g = otherOperand(mul, m.root->getResult(0));
      if (isFeatureVector(g, features)) {
        m.scale = g;
        m.root = mul;
      }
    }
  }
  if (!allowBias) return;
  if (Operation *user = singleUser(m.root->getResult(0))) {
    if (auto add = dyn_cast<AddOp>(user)) {
      Value b = otherOperand(add, m.root->getResult(0));
      if (isFeatureVector(b, features)) {
        m.bias = b;
        m.root = add;
      }
    }
  }
}

} // namespace

FailureOr<NormMatch> matchLayerNorm(ReduceMeanOp mean, std::string &why) {
  if (!isLastAxisMean(mean)) return (why = "the mean is not over the last axis with keepdims", failure());
  Value x = mean.getInput();
  int64_t features = cast<RankedTensorType>(x.getType()).getShape().back();
  SubOp centered;
  for (Operation *user : mean->getUsers())
    if (auto sub = dyn_cast<SubOp>(user); sub && sub.getLhs() == x && sub.getRhs() == mean.getResult()) centered = sub;
  if (!centered) return (why = "the mean is not subtracted from its own input (x - mean(x))", failure());
  Operation *square = nullptr;
  Operation *divide = nullptr;
  for (Operation *user : centered->getUsers()) {
    if (squaredBase(user->getResult(0)) == centered.getResult()) square = user;
    else if (isa<DivOp>(user) && user->getOperand(0) == centered.getResult()) divide = user;
  }
  if (!square) return (why = "the centered input is not squared", failure());
  auto variance = dyn_cast_or_null<ReduceMeanOp>(singleUser(square->getResult(0)));
  if (!variance || !isLastAxisMean(variance)) return (why = "the squared deviation is not averaged over the last axis", failure());
  auto addEps = dyn_cast_or_null<AddOp>(singleUser(variance.getResult()));
  Value eps = addEps ? otherOperand(addEps, variance.getResult()) : Value();
  auto epsilon = eps ? getConstantScalar(eps) : std::nullopt;
  if (!epsilon) return (why = "no constant epsilon is added to the variance", failure());
  auto sqrt = dyn_cast_or_null<SqrtOp>(singleUser(addEps.getResult()));
  if (!sqrt) return (why = "the variance + epsilon is not square-rooted", failure());
  if (!divide || divide->getOperand(1) != sqrt.getResult())
    return (why = "the centered input is not divided by the standard deviation", failure());
  NormMatch m;
  m.input = x;
  m.epsilon = *epsilon;
  m.root = divide;
  matchAffine(m, features, /*allowBias=*/true);
  return m;
}

FailureOr<NormMatch> matchRmsNorm(ReduceMeanOp meanOfSquares, std::string &why) {
  if (!isLastAxisMean(meanOfSquares)) return (why = "the mean is not over the last axis with keepdims", failure());
  Value x = squaredBase(meanOfSquares.getInput());
  if (!x) return (why = "the averaged value is not a square x²", failure());
  if (auto sub = x.getDefiningOp<SubOp>())
    if (auto mean = sub.getRhs().getDefiningOp<ReduceMeanOp>(); mean && mean.getInput() == sub.getLhs())
      return (why = "the squared value is x - mean(x) (a layer norm, not an RMS norm)", failure());
  int64_t features = cast<RankedTensorType>(x.getType()).getShape().back();
  auto addEps = dyn_cast_or_null<AddOp>(singleUser(meanOfSquares.getResult()));
  Value eps = addEps ? otherOperand(addEps, meanOfSquares.getResult()) : Value();
  auto epsilon = eps ? getConstantScalar(eps) : std::nullopt;
  if (!epsilon) return (why = "no constant epsilon is added to mean(x²)", failure());
  auto sqrt = dyn_cast_or_null<SqrtOp>(singleUser(addEps.getResult()));
  if (!sqrt) return (why = "mean(x²) + epsilon is not square-rooted", failure());
  Operation *next = singleUser(sqrt.getResult());
  Operation *root = nullptr;
  if (auto div = dyn_cast_or_null<DivOp>(next)) {
    if (div.getLhs() == x && div.getRhs() == sqrt.getResult()) root = div;                       // x / rms
    else if (isScalarConst(div.getLhs(), 1.0, 1e-9)) next = div;                                 // 1 / rms
  } else if (isa_and_nonnull<ReciprocalOp>(next)) {
  } else {
    next = nullptr;
  }
  if (!root) {
    if (!next) return (why = "the rms is neither inverted nor divided into x", failure());
    auto mul = dyn_cast_or_null<MulOp>(singleUser(next->getResult(0)));
    if (!mul || otherOperand(mul, next->getResult(0)) != x)
      return (why = "x is not multiplied by 1/rms", failure());
    root = mul;
  }
  NormMatch m;
  m.input = x;
  m.epsilon = *epsilon;
  m.root = root;
  matchAffine(m, features, /*allowBias=*/false);
  return m;
}

namespace {
/// The final multiply of x · 0.5 · (1 + f): given the `1 + f` value, returns
/// the op producing the GELU result, in the orderings exporters emit.
Operation *matchHalfXTimes(Value onePlus, Value x, std::string &why) {
  Operation *user = singleUser(onePlus);
  auto mul = dyn_cast_or_null<MulOp>(user);
  if (!mul) return (why = "(1 + f) is not multiplied", nullptr);
  Value other = otherOperand(mul, onePlus);
  auto isHalfX = [&](Value v) {
    if (auto m = v.getDefiningOp<MulOp>()) {
      Value o = otherOperand(m, x);
      return o && isScalarConst(o, 0.5);
    }
    if (auto d = v.getDefiningOp<DivOp>()) return d.getLhs() == x && isScalarConst(d.getRhs(), 2.0);
    return false;
  };
  if (isHalfX(other)) return mul; // (0.5·x)·(1+f)
  if (other == x) {               // (x·(1+f))·0.5
    auto half = dyn_cast_or_null<MulOp>(singleUser(mul.getResult()));
    if (half && isScalarConst(otherOperand(half, mul.getResult()), 0.5)) return half;
    return (why = "x·(1 + f) is not multiplied by 0.5", nullptr);
  }
  if (isScalarConst(other, 0.5)) { // (0.5·(1+f))·x
    auto byX = dyn_cast_or_null<MulOp>(singleUser(mul.getResult()));
    if (byX && otherOperand(byX, mul.getResult()) == x) return byX;
    return (why = "0.5·(1 + f) is not multiplied by x", nullptr);
  }
  return (why = "(1 + f) is not multiplied by x and 0.5", nullptr);
}

Operation *matchOnePlus(Value f, std::string &why) {
  auto add = dyn_cast_or_null<AddOp>(singleUser(f));
  if (!add || !isScalarConst(otherOperand(add, f), 1.0)) return (why = "f is not followed by + 1", nullptr);
  return add;
}
} // namespace

FailureOr<ActivationMatch> matchGeluErf(ErfOp erf, std::string &why) {
  Value x;
  if (auto div = erf.getInput().getDefiningOp<DivOp>(); div && isScalarConst(div.getRhs(), M_SQRT2)) x = div.getLhs();
  if (auto mul = erf.getInput().getDefiningOp<MulOp>()) {
    if (isScalarConst(mul.getRhs(), M_SQRT1_2)) x = mul.getLhs();
    else if (isScalarConst(mul.getLhs(), M_SQRT1_2)) x = mul.getRhs();
  }
  if (!x) return (why = "the erf input is not x/√2", failure());
  Operation *onePlus = matchOnePlus(erf.getResult(), why);
  if (!onePlus) return (why = "erf(x/√2) is not followed by + 1", failure());
  Operation *root = matchHalfXTimes(onePlus->getResult(0), x, why);
  if (!root) return failure();
  return ActivationMatch{x, root};
}

FailureOr<ActivationMatch> matchGeluTanh(TanhOp tanh, std::string &why) {
  auto outer = tanh.getInput().getDefiningOp<MulOp>();
  Value inner;
  if (outer) {
    if (isScalarConst(outer.getLhs(), std::sqrt(2.0 / M_PI))) inner = outer.getRhs();
    else if (isScalarConst(outer.getRhs(), std::sqrt(2.0 / M_PI))) inner = outer.getLhs();
  }
  if (!inner) return (why = "the tanh input is not √(2/π)·(…)", failure());
  auto add = inner.getDefiningOp<AddOp>();
  if (!add) return (why = "the tanh argument is not x + 0.044715·x³", failure());
  Value x;
  for (auto [a, b] : {std::pair{add.getLhs(), add.getRhs()}, std::pair{add.getRhs(), add.getLhs()}}) {
    auto cubic = b.getDefiningOp<MulOp>();
    if (!cubic) continue;
    Value cube = isScalarConst(cubic.getLhs(), 0.044715) ? cubic.getRhs()
                 : isScalarConst(cubic.getRhs(), 0.044715) ? cubic.getLhs() : Value();
    auto pow = cube ? cube.getDefiningOp<PowOp>() : PowOp();
    if (pow && pow.getLhs() == a && isScalarConst(pow.getRhs(), 3.0, 1e-9)) x = a;
  }
  if (!x) return (why = "the tanh argument is not x + 0.044715·x³", failure());
  Operation *onePlus = matchOnePlus(tanh.getResult(), why);
  if (!onePlus) return (why = "tanh(…) is not followed by + 1", failure());
  Operation *root = matchHalfXTimes(onePlus->getResult(0), x, why);
  if (!root) return failure();
  return ActivationMatch{x, root};
}

FailureOr<ActivationMatch> matchSilu(SigmoidOp sigmoid, std::string &why) {
  Value x = sigmoid.getInput();
  for (Operation *user : sigmoid->getUsers())
    if (auto mul = dyn_cast<MulOp>(user); mul && otherOperand(mul, sigmoid.getResult()) == x)
      return ActivationMatch{x, mul};
  return (why = "sigmoid(x) is not multiplied by x", failure());
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

namespace {

/// True if `v` is a constant whose last two dims hold a lower-triangular
/// boolean/0-1 pattern (the causal bias buffer of GPT-2 style models).
bool isLowerTriangularConstant(Value v) {
  auto host = readConstantValue(v, int64_t(1) << 24);
  if (!host || host->shape.size() < 2) return false;
  int64_t rows = host->shape[host->shape.size() - 2], cols = host->shape.back();
  for (int64_t i = 0, n = host->numElements(); i < n; ++i) {
    int64_t c = i % cols, r = (i / cols) % rows;
    bool one = host->getDouble(i) != 0;
    if (one != (c <= r)) return false;
  }
  return true;
}

/// A boolean causal condition: a slice of a lower-triangular buffer taken
/// along its last two dims from the start.
bool isCausalCondition(Value cond) {
  Value v = cond;
  int64_t rank = rankOf(cond);
  while (true) {
    if (auto slice = v.getDefiningOp<SliceOp>()) {
      // Only slices of the last two dims starting at 0 keep the triangle aligned.
      auto starts = getConstantInts(slice.getStarts()), axes = getConstantInts(slice.getAxes());
      auto steps = getConstantInts(slice.getSteps());
      if (!starts || !axes || !steps) return false;
      for (size_t i = 0; i < axes->size(); ++i)
        if ((*starts)[i] != 0 || (*steps)[i] != 1 || normalizeAxis((*axes)[i], rank) < rank - 2) return false;
      v = slice.getInput();
      continue;
    }
    if (auto gather = v.getDefiningOp<GatherOp>()) {
      // Rows 0..S-1 (the positions op) of the buffer, along one of the last two dims.
      if (!gather.getIndices().getDefiningOp<PositionsOp>() || normalizeAxis(gather.getAxis(), rank) < rank - 2)
        return false;
      v = gather.getInput();
      continue;
    }
    if (auto cast = v.getDefiningOp<CastOp>()) { v = cast.getInput(); continue; }
    break;
  }
  return v != cond && isLowerTriangularConstant(v);
}

/// Peels scalar multiplies/divides, returning the inner value.
Value peelScale(Value v, double &scale) {
  while (true) {
    if (auto mul = v.getDefiningOp<MulOp>()) {
      if (auto c = getConstantScalar(mul.getRhs())) { scale *= *c; v = mul.getLhs(); continue; }
      if (auto c = getConstantScalar(mul.getLhs())) { scale *= *c; v = mul.getRhs(); continue; }
    }
    if (auto div = v.getDefiningOp<DivOp>()) {
      if (auto c = getConstantScalar(div.getRhs()); c && *c != 0) { scale /= *c; v = div.getLhs(); continue; }
    }
    return v;
  }
}

/// repeat_kv: reshape(expand(unsqueeze(k, 2), [B, Hkv, n, S, D]), [B, Hkv·n, S, D]) → k.
Value peelRepeatKv(Value v) {
  auto reshape = v.getDefiningOp<ReshapeOp>();
  if (!reshape || rankOf(v) != 4) return v;
  auto expand = reshape.getInput().getDefiningOp<ExpandOp>();
  if (!expand || rankOf(expand.getResult()) != 5) return v;
  auto unsqueeze = expand.getInput().getDefiningOp<UnsqueezeOp>();
  if (!unsqueeze || unsqueeze.getAxes() != ArrayRef<int64_t>{2}) return v;
  Value base = unsqueeze.getInput();
  auto baseType = cast<RankedTensorType>(base.getType());
  auto outType = cast<RankedTensorType>(v.getType());
  if (baseType.getDimSize(1) == kDynamic || outType.getDimSize(1) == kDynamic ||
      outType.getDimSize(1) % baseType.getDimSize(1))
    return v;
  return base;
}

} // namespace

FailureOr<AttentionMatch> matchAttention(SoftmaxOp softmax, std::string &why) {
  Value probs = softmax.getResult();
  int64_t rank = rankOf(probs);
  if (rank != 4) return (why = "the softmax input is not rank 4 [batch, heads, q_seq, k_seq]", failure());
  if (normalizeAxis(softmax.getAxis(), rank) != rank - 1) return (why = "the softmax is not over the last axis", failure());
  auto pv = dyn_cast_or_null<MatMulOp>(singleUser(probs));
  if (!pv || pv.getLhs() != probs) return (why = "the softmax output is not multiplied by V (probs·V)", failure());

  AttentionMatch m;
  m.scale = 1.0;
  // Walk from the softmax input to the Q·Kᵀ matmul, collecting scale, masks and causality.
  Value v = softmax.getInput();
  SmallVector<Value> masks;
  MatMulOp qk;
  for (int steps = 0; steps < 16 && !qk; ++steps) {
    if ((qk = v.getDefiningOp<MatMulOp>())) break;
    if (auto add = v.getDefiningOp<AddOp>()) {
      // The scores side is the one that reaches a matmul through scale/mask ops.
      auto reachesMatMul = [](Value x) {
        for (int i = 0; i < 8 && x; ++i) {
          Operation *op = x.getDefiningOp();
          if (!op) return false;
          if (isa<MatMulOp>(op)) return true;
          if (isa<AddOp, MulOp, DivOp>(op)) {
            Value next;
            for (Value o : op->getOperands()) if (!getConstantScalar(o)) { next = o; break; }
            x = next;
          } else if (auto w = dyn_cast<WhereOp>(op)) {
            x = w.getLhs();
          } else {
            return false;
          }
        }
        return false;
      };
      if (reachesMatMul(add.getLhs())) { masks.push_back(add.getRhs()); v = add.getLhs(); continue; }
      if (reachesMatMul(add.getRhs())) { masks.push_back(add.getLhs()); v = add.getRhs(); continue; }
      return (why = "an add before the softmax does not lead to Q·Kᵀ", failure());
    }
    if (auto where = v.getDefiningOp<WhereOp>()) {
      auto fill = getConstantScalar(where.getRhs());
      if (!fill || *fill > -1e4) return (why = "a where before the softmax does not fill with a large negative value", failure());
      if (!isCausalCondition(where.getCondition()))
        return (why = "a where before the softmax is not a causal mask (lower-triangular buffer slice)", failure());
      m.causal = true;
      v = where.getLhs();
      continue;
    }
    Value inner = peelScale(v, m.scale);
    if (inner == v) return (why = "the softmax input is not Q·Kᵀ (scaled, masked)", failure());
    v = inner;
  }
  if (!qk) return (why = "the softmax input is not Q·Kᵀ (scaled, masked)", failure());
  Value q = peelScale(qk.getLhs(), m.scale);
  Value kT = peelScale(qk.getRhs(), m.scale);
  if (rankOf(q) != 4 || rankOf(kT) != 4) return (why = "Q and Kᵀ are not rank 4 [batch, heads, seq, head_dim]", failure());
  // Kᵀ as a transpose of K over its last two dims.
  Value k;
  if (auto t = kT.getDefiningOp<TransposeOp>(); t && t.getPerm() == ArrayRef<int64_t>{0, 1, 3, 2}) k = t.getInput();
  if (k) {
    m.key = peelRepeatKv(k);
  } else {
    m.key = kT;
    m.keyIsTransposed = true;
  }
  m.value = peelRepeatKv(pv.getRhs());
  m.query = q;
  auto qType = cast<RankedTensorType>(q.getType());
  auto kType = cast<RankedTensorType>(m.key.getType());
  auto vType = cast<RankedTensorType>(m.value.getType());
  if (rankOf(m.value) != 4) return (why = "V is not rank 4", failure());
  if (qType.getDimSize(1) == kDynamic) return (why = "the number of query heads (dim 1) is dynamic", failure());
  m.numHeads = qType.getDimSize(1);
  int64_t kvHeads = kType.getDimSize(1);
  if (kvHeads == kDynamic || vType.getDimSize(1) != kvHeads || m.numHeads % kvHeads)
    return (why = "K and V heads do not divide the query heads", failure());
  m.numKvHeads = kvHeads;
  if (!masks.empty()) {
    for (Value mask : masks)
      if (rankOf(mask) > 4) return (why = "the additive mask has rank > 4", failure());
    m.mask = masks.front();
  }
  if (masks.size() > 1) return (why = "more than one additive mask before the softmax", failure());
  m.root = pv;
  return m;
}

} // namespace lathe::passes
