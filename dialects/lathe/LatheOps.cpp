// Result-type inference and verifiers of the lathe ops. Inference is shared by
// the importer (which builds every op through it) and by type refinement after
// folding; verifiers say what is wrong in words a user can act on.
#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;

namespace lathe::ir {
namespace {

RankedTensorType rankedType(Value v) { return dyn_cast<RankedTensorType>(v.getType()); }
ArrayRef<int64_t> shapeOf(Value v) { return rankedType(v).getShape(); }

LogicalResult pushTensor(SmallVectorImpl<Type> &types, ArrayRef<int64_t> shape, Type elementType) {
  types.push_back(RankedTensorType::get(shape, elementType));
  return success();
}

LogicalResult inferSame(Value input, SmallVectorImpl<Type> &types) {
  types.push_back(input.getType());
  return success();
}

LogicalResult inferBroadcast(std::optional<Location> loc, ArrayRef<Value> operands,
                             Type elementType, SmallVectorImpl<Type> &types) {
  SmallVector<int64_t> shape;
  for (Value operand : operands) {
    auto next = broadcastShapes(shape, shapeOf(operand));
    if (failed(next))
      return emitOptionalError(loc, "operand shapes ", shapeToString(shape), " and ",
                               shapeToString(shapeOf(operand)), " do not broadcast");
    shape = *next;
  }
  return pushTensor(types, shape, elementType);
}

LogicalResult inferReduce(std::optional<Location> loc, Value input, ArrayRef<int64_t> axes,
                          bool keepdims, SmallVectorImpl<Type> &types) {
  auto shape = shapeOf(input);
  int64_t rank = shape.size();
  SmallVector<bool> reduced(rank, false);
  for (int64_t axis : axes) {
    auto a = normalizeAxis(axis, rank);
    if (!a) return emitOptionalError(loc, "reduction axis ", axis, " is out of range for rank ", rank);
    reduced[*a] = true;
  }
  if (axes.empty()) reduced.assign(rank, true);
  SmallVector<int64_t> out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced[i]) out.push_back(shape[i]);
    else if (keepdims) out.push_back(1);
  }
  return pushTensor(types, out, rankedType(input).getElementType());
}

/// Applies ONNX Reshape semantics (0 copies, -1 infers) to a known target.
FailureOr<SmallVector<int64_t>> reshapeTarget(std::optional<Location> loc, ArrayRef<int64_t> in,
                                              ArrayRef<int64_t> target) {
  // Dimensions copied with 0 cancel out of the element count, so a -1 can be
  // inferred even when those copied dimensions are dynamic.
  SmallVector<int64_t> out;
  int64_t inferIndex = -1, knownProduct = 1;
  bool knownAll = true;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t t = target[i];
    if (t == 0) {
      if (i >= in.size())
        return ((void)emitOptionalError(loc, "reshape target copies dimension ", i,
                                  " but the input has rank ", in.size()), failure());
      out.push_back(in[i]);
      continue;
    } else if (t == -1) {
      if (inferIndex >= 0) return ((void)emitOptionalError(loc, "reshape target has two -1 entries"), failure());
      inferIndex = i;
      out.push_back(kDynamic);
      continue;
    } else if (t < -1) {
      return ((void)emitOptionalError(loc, "reshape target has a negative size ", t), failure());
    } else {
      out.push_back(t);
    }
    if (out.back() == kDynamic) knownAll = false;
    else knownProduct *= out.back();
  }
  int64_t inProduct = 1;
  bool inStatic = true;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i < target.size() && target[i] == 0) continue;
    if (in[i] == kDynamic) inStatic = false;
    else inProduct *= in[i];
  }
  if (inferIndex >= 0 && inStatic && knownAll) {
    if (knownProduct == 0 || inProduct % knownProduct)
      return ((void)emitOptionalError(loc, "cannot reshape ", shapeToString(in), " to ",
                                shapeToString(target)), failure());
    out[inferIndex] = inProduct / knownProduct;
  }
  if (inferIndex < 0 && inStatic && knownAll && inProduct != knownProduct)
    return ((void)emitOptionalError(loc, "cannot reshape ", shapeToString(in), " (", inProduct,
                              " elements) to ", shapeToString(target)), failure());
  return out;
}

int64_t staticLength(Value v) {
  auto t = rankedType(v);
  if (!t || t.getRank() > 1) return kDynamic;
  return t.getRank() == 0 ? 1 : t.getDimSize(0);
}

} // namespace

//===----------------------------------------------------------------------===//
// Inference
//===----------------------------------------------------------------------===//

LogicalResult ConstantOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                           SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getValue().getType());
  return success();
}

LogicalResult LinearOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  auto w = shapeOf(adaptor.getWeight());
  if (in.empty() || w.size() != 2)
    return emitOptionalError(loc, "linear needs an input of rank >= 1 and a 2-D weight");
  SmallVector<int64_t> out(in.begin(), in.end());
  out.back() = w[0];
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

LogicalResult QuantizedLinearOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                                  SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  auto w = shapeOf(adaptor.getWeight());
  if (in.empty() || w.size() != 2)
    return emitOptionalError(loc, "quantized_linear needs an input of rank >= 1 and a 2-D weight");
  SmallVector<int64_t> out(in.begin(), in.end());
  out.back() = w[0];
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

LogicalResult SparseLinearOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  auto idx = shapeOf(adaptor.getIndices());
  if (in.empty() || idx.size() != 2)
    return emitOptionalError(loc, "sparse_linear needs an input of rank >= 1 and 2-D indices");
  SmallVector<int64_t> out(in.begin(), in.end());
  out.back() = idx[0];
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

int64_t QuantizedLinearOp::getInFeatures() {
  int64_t stored = cast<RankedTensorType>(getWeight().getType()).getDimSize(1);
  if (stored == kDynamic) return stored;
  if (getFormat() == "int4") return 2 * stored;
  if (getFormat() == "int3") return stored / 12 * 32; // 12 bytes per 32 weights
  return stored;
}

LogicalResult MatMulOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  SmallVector<int64_t> a(shapeOf(adaptor.getLhs())), b(shapeOf(adaptor.getRhs()));
  if (a.empty() || b.empty()) return emitOptionalError(loc, "matmul operands must have rank >= 1");
  bool dropM = a.size() == 1, dropN = b.size() == 1;
  if (dropM) a.insert(a.begin(), 1);
  if (dropN) b.push_back(1);
  auto batch = broadcastShapes(ArrayRef<int64_t>(a).drop_back(2), ArrayRef<int64_t>(b).drop_back(2));
  if (failed(batch)) return emitOptionalError(loc, "matmul batch dimensions do not broadcast");
  SmallVector<int64_t> out = *batch;
  if (!dropM) out.push_back(a[a.size() - 2]);
  if (!dropN) out.push_back(b.back());
  return pushTensor(types, out, rankedType(adaptor.getLhs()).getElementType());
}

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  auto q = shapeOf(adaptor.getQuery());
  auto v = shapeOf(adaptor.getValue());
  if (q.size() != 4 || v.size() != 4)
    return emitOptionalError(loc, "attention needs rank-4 [batch, heads, seq, head_dim] operands");
  return pushTensor(types, {q[0], q[1], q[2], v[3]}, rankedType(adaptor.getQuery()).getElementType());
}

#define LATHE_INFER_SAME(OP)                                                                    \
  LogicalResult OP::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,   \
                                     SmallVectorImpl<Type> &types) {                            \
    return inferSame(adaptor.getInput(), types);                                                \
  }
LATHE_INFER_SAME(LayerNormOp)
LATHE_INFER_SAME(RmsNormOp)
LATHE_INFER_SAME(GeluOp)
LATHE_INFER_SAME(RotaryOp)
LATHE_INFER_SAME(SoftmaxOp)
LATHE_INFER_SAME(IdentityOp)
LATHE_INFER_SAME(SqrtOp)
LATHE_INFER_SAME(ErfOp)
LATHE_INFER_SAME(TanhOp)
LATHE_INFER_SAME(ExpOp)
LATHE_INFER_SAME(LogOp)
LATHE_INFER_SAME(CosOp)
LATHE_INFER_SAME(SinOp)
LATHE_INFER_SAME(ReluOp)
LATHE_INFER_SAME(SigmoidOp)
LATHE_INFER_SAME(SiluOp)
LATHE_INFER_SAME(NegOp)
LATHE_INFER_SAME(AbsOp)
LATHE_INFER_SAME(ReciprocalOp)
LATHE_INFER_SAME(NotOp)
LATHE_INFER_SAME(TriluOp)

LogicalResult ScatterNdOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  return inferSame(adaptor.getData(), types);
}
#undef LATHE_INFER_SAME

LogicalResult EmbeddingOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  auto table = shapeOf(adaptor.getTable());
  if (table.size() != 2) return emitOptionalError(loc, "embedding table must be 2-D");
  SmallVector<int64_t> out(shapeOf(adaptor.getIndices()));
  out.push_back(table[1]);
  return pushTensor(types, out, rankedType(adaptor.getTable()).getElementType());
}

LogicalResult QuantizedEmbeddingOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                                     SmallVectorImpl<Type> &types) {
  auto table = shapeOf(adaptor.getTable());
  if (table.size() != 2) return emitOptionalError(loc, "embedding table must be 2-D");
  SmallVector<int64_t> out(shapeOf(adaptor.getIndices()));
  out.push_back(table[1]);
  return pushTensor(types, out, Float32Type::get(adaptor.getTable().getContext()));
}

LogicalResult PositionsOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  auto ref = shapeOf(adaptor.getReference());
  auto axis = normalizeAxis(int64_t(adaptor.getAxis()), ref.size());
  if (!axis) return emitOptionalError(loc, "positions axis is out of range");
  return pushTensor(types, {ref[*axis]}, IntegerType::get(ctx, 64));
}

LogicalResult CastOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                       SmallVectorImpl<Type> &types) {
  return pushTensor(types, shapeOf(adaptor.getInput()), adaptor.getTo());
}

#define LATHE_INFER_BINARY(OP, ELEMENT)                                                           \
  LogicalResult OP::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor, \
                                     SmallVectorImpl<Type> &types) {                              \
    Type lhsElement = rankedType(adaptor.getLhs()).getElementType();                              \
    (void)lhsElement;                                                                             \
    return inferBroadcast(loc, {adaptor.getLhs(), adaptor.getRhs()}, ELEMENT, types);             \
  }
LATHE_INFER_BINARY(AddOp, lhsElement)
LATHE_INFER_BINARY(SubOp, lhsElement)
LATHE_INFER_BINARY(MulOp, lhsElement)
LATHE_INFER_BINARY(DivOp, lhsElement)
LATHE_INFER_BINARY(PowOp, lhsElement)
LATHE_INFER_BINARY(MaxOp, lhsElement)
LATHE_INFER_BINARY(MinOp, lhsElement)
LATHE_INFER_BINARY(AndOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(OrOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(EqualOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(LessOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(LessEqualOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(GreaterOp, IntegerType::get(ctx, 1))
LATHE_INFER_BINARY(GreaterEqualOp, IntegerType::get(ctx, 1))
#undef LATHE_INFER_BINARY

LogicalResult WhereOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  return inferBroadcast(loc, {adaptor.getCondition(), adaptor.getLhs(), adaptor.getRhs()},
                        rankedType(adaptor.getLhs()).getElementType(), types);
}

#define LATHE_INFER_REDUCE(OP)                                                                   \
  LogicalResult OP::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor, \
                                     SmallVectorImpl<Type> &types) {                             \
    return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types); \
  }
LATHE_INFER_REDUCE(ReduceMeanOp)
LATHE_INFER_REDUCE(ReduceSumOp)
LATHE_INFER_REDUCE(ReduceMaxOp)
LATHE_INFER_REDUCE(ReduceMinOp)
#undef LATHE_INFER_REDUCE

LogicalResult ShapeOfOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location>, Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  return pushTensor(types, {rankedType(adaptor.getInput()).getRank()}, IntegerType::get(ctx, 64));
}

LogicalResult ReshapeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  Type element = rankedType(adaptor.getInput()).getElementType();
  if (auto target = getConstantInts(adaptor.getShape())) {
    auto out = reshapeTarget(loc, shapeOf(adaptor.getInput()), *target);
    if (failed(out)) return failure();
    return pushTensor(types, *out, element);
  }
  int64_t rank = staticLength(adaptor.getShape());
  if (rank == kDynamic) return emitOptionalError(loc, "reshape target must have a static length");
  return pushTensor(types, SmallVector<int64_t>(rank, kDynamic), element);
}

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  auto perm = adaptor.getPerm();
  if (perm.size() != in.size())
    return emitOptionalError(loc, "transpose permutation has ", perm.size(), " entries for rank ", in.size());
  SmallVector<int64_t> out;
  SmallVector<bool> seen(in.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= int64_t(in.size()) || seen[p])
      return emitOptionalError(loc, "transpose permutation is not a permutation of 0..", in.size() - 1);
    seen[p] = true;
    out.push_back(in[p]);
  }
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  auto inputs = adaptor.getInputs();
  if (inputs.empty()) return emitOptionalError(loc, "concat needs at least one input");
  SmallVector<int64_t> out(shapeOf(inputs[0]));
  auto axis = normalizeAxis(int64_t(adaptor.getAxis()), out.size());
  if (!axis) return emitOptionalError(loc, "concat axis is out of range");
  for (Value v : inputs.drop_front()) {
    auto s = shapeOf(v);
    if (s.size() != out.size()) return emitOptionalError(loc, "concat inputs have different ranks");
    for (size_t i = 0; i < s.size(); ++i) {
      if (int64_t(i) == *axis) {
        out[i] = (out[i] == kDynamic || s[i] == kDynamic) ? kDynamic : out[i] + s[i];
      } else if (out[i] == kDynamic) {
        out[i] = s[i];
      } else if (s[i] != kDynamic && s[i] != out[i]) {
        return emitOptionalError(loc, "concat inputs differ in dimension ", i, ": ", out[i], " vs ", s[i]);
      }
    }
  }
  return pushTensor(types, out, rankedType(inputs[0]).getElementType());
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  SmallVector<int64_t> in(shapeOf(adaptor.getInput()));
  int64_t rank = in.size();
  Type element = rankedType(adaptor.getInput()).getElementType();
  auto axes = getConstantInts(adaptor.getAxes());
  if (!axes) return pushTensor(types, SmallVector<int64_t>(rank, kDynamic), element);
  auto starts = getConstantInts(adaptor.getStarts());
  auto ends = getConstantInts(adaptor.getEnds());
  auto steps = getConstantInts(adaptor.getSteps());
  SmallVector<int64_t> out = in;
  for (size_t i = 0; i < axes->size(); ++i) {
    auto axis = normalizeAxis((*axes)[i], rank);
    if (!axis) return emitOptionalError(loc, "slice axis ", (*axes)[i], " is out of range for rank ", rank);
    int64_t dim = in[*axis];
    if (!starts || !ends || !steps || dim == kDynamic || i >= starts->size() || i >= ends->size() ||
        i >= steps->size()) {
      out[*axis] = kDynamic;
      continue;
    }
    int64_t step = (*steps)[i];
    if (step == 0) return emitOptionalError(loc, "slice step is 0");
    int64_t start = (*starts)[i], end = (*ends)[i];
    if (start < 0) start += dim;
    if (end < 0 && end > std::numeric_limits<int64_t>::min() / 2) end += dim;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      out[*axis] = end > start ? (end - start + step - 1) / step : 0;
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      out[*axis] = start > end ? (start - end - step - 1) / (-step) : 0;
    }
  }
  return pushTensor(types, out, element);
}

LogicalResult SplitOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  SmallVector<int64_t> in(shapeOf(adaptor.getInput()));
  auto axis = normalizeAxis(int64_t(adaptor.getAxis()), in.size());
  if (!axis) return emitOptionalError(loc, "split axis is out of range");
  for (int64_t size : adaptor.getSizes()) {
    SmallVector<int64_t> out = in;
    out[*axis] = size;
    types.push_back(RankedTensorType::get(out, rankedType(adaptor.getInput()).getElementType()));
  }
  return success();
}

LogicalResult SqueezeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  SmallVector<bool> drop(in.size(), false);
  for (int64_t a : adaptor.getAxes()) {
    auto axis = normalizeAxis(a, in.size());
    if (!axis) return emitOptionalError(loc, "squeeze axis ", a, " is out of range");
    if (in[*axis] != 1 && in[*axis] != kDynamic)
      return emitOptionalError(loc, "squeeze axis ", a, " has size ", in[*axis], ", not 1");
    drop[*axis] = true;
  }
  SmallVector<int64_t> out;
  for (size_t i = 0; i < in.size(); ++i)
    if (!drop[i]) out.push_back(in[i]);
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

LogicalResult UnsqueezeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  int64_t rank = in.size() + adaptor.getAxes().size();
  SmallVector<bool> inserted(rank, false);
  for (int64_t a : adaptor.getAxes()) {
    auto axis = normalizeAxis(a, rank);
    if (!axis || inserted[*axis]) return emitOptionalError(loc, "unsqueeze axis ", a, " is invalid");
    inserted[*axis] = true;
  }
  SmallVector<int64_t> out;
  size_t next = 0;
  for (int64_t i = 0; i < rank; ++i) out.push_back(inserted[i] ? 1 : in[next++]);
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

LogicalResult ExpandOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  Type element = rankedType(adaptor.getInput()).getElementType();
  auto in = shapeOf(adaptor.getInput());
  if (auto target = getConstantInts(adaptor.getShape())) {
    auto out = broadcastShapes(in, *target);
    if (failed(out))
      return emitOptionalError(loc, "cannot expand ", shapeToString(in), " to ", shapeToString(*target));
    return pushTensor(types, *out, element);
  }
  int64_t len = staticLength(adaptor.getShape());
  if (len == kDynamic) return emitOptionalError(loc, "expand target must have a static length");
  int64_t rank = std::max<int64_t>(len, in.size());
  SmallVector<int64_t> out(rank, kDynamic);
  // Dimensions of the input larger than 1 survive any valid broadcast.
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i] != 1 && in[i] != kDynamic) out[rank - in.size() + i] = in[i];
  return pushTensor(types, out, element);
}

LogicalResult FillOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                       SmallVectorImpl<Type> &types) {
  Type element = cast<ShapedType>(adaptor.getValue().getType()).getElementType();
  if (auto target = getConstantInts(adaptor.getShape())) {
    for (int64_t d : *target)
      if (d < 0) return emitOptionalError(loc, "fill shape has a negative dimension");
    return pushTensor(types, *target, element);
  }
  int64_t len = staticLength(adaptor.getShape());
  if (len == kDynamic) return emitOptionalError(loc, "fill shape must have a static length");
  return pushTensor(types, SmallVector<int64_t>(len, kDynamic), element);
}

LogicalResult RangeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  Type element = rankedType(adaptor.getStart()).getElementType();
  auto start = getConstantScalar(adaptor.getStart());
  auto limit = getConstantScalar(adaptor.getLimit());
  auto delta = getConstantScalar(adaptor.getDelta());
  if (start && limit && delta) {
    if (*delta == 0) return emitOptionalError(loc, "range delta is 0");
    int64_t n = std::max<int64_t>(0, int64_t(std::ceil((*limit - *start) / *delta)));
    return pushTensor(types, {n}, element);
  }
  return pushTensor(types, {kDynamic}, element);
}

LogicalResult GatherOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc, Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  auto in = shapeOf(adaptor.getInput());
  auto axis = normalizeAxis(int64_t(adaptor.getAxis()), in.size());
  if (!axis) return emitOptionalError(loc, "gather axis is out of range");
  SmallVector<int64_t> out(in.begin(), in.begin() + *axis);
  auto idx = shapeOf(adaptor.getIndices());
  out.append(idx.begin(), idx.end());
  out.append(in.begin() + *axis + 1, in.end());
  return pushTensor(types, out, rankedType(adaptor.getInput()).getElementType());
}

//===----------------------------------------------------------------------===//
// Verifiers
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  auto in = shapeOf(getInput());
  auto w = shapeOf(getWeight());
  if (w.size() != 2) return emitOpError("weight must be 2-D [out_features, in_features], got rank ") << w.size();
  if (in.empty()) return emitOpError("input must have rank >= 1");
  if (in.back() != kDynamic && w[1] != kDynamic && in.back() != w[1])
    return emitOpError("input has ") << in.back() << " features but the weight expects " << w[1]
                                     << " (weight is [out_features, in_features] = " << shapeToString(w) << ")";
  if (getBias()) {
    auto b = shapeOf(getBias());
    if (b.size() != 1 || (b[0] != kDynamic && w[0] != kDynamic && b[0] != w[0]))
      return emitOpError("bias must be [") << w[0] << "], got " << shapeToString(b);
  }
  return success();
}

LogicalResult QuantizedLinearOp::verify() {
  auto w = cast<RankedTensorType>(getWeight().getType());
  StringRef format = getFormat();
  Type element = w.getElementType();
  const bool subByte = format == "int4" || format == "int3";
  const bool int8 = format == "int8" || format == "w8a8";
  bool elementOk = (int8 && element.isSignlessInteger(8)) || (subByte && element.isUnsignedInteger(8)) ||
                   (format == "bf16" && element.isBF16()) || (format == "fp16" && element.isF16());
  const bool storage = format == "bf16" || format == "fp16"; // weight-only float storage: no scales
  if (!int8 && !subByte && !storage)
    return emitOpError("unknown format '") << format << "' (expected int8, int4, int3, bf16, fp16 or w8a8)";
  if (!elementOk)
    return emitOpError("a ") << format << " weight must be "
                             << (int8 ? "i8" : subByte ? "ui8" : format == "fp16" ? "f16" : "bf16") << ", got " << element;
  if (format != "w8a8" && (getActScales() || getActScaleAttr()))
    return emitOpError("only a w8a8 weight has act_scale(s)");
  if (getActScales() && !getActScaleAttr()) return emitOpError("act_scales needs act_scale (the row scale)");
  if (auto s = getActScaleAttr(); s && !(s.getValueAsDouble() > 0))
    return emitOpError("act_scale must be positive, got ") << s.getValueAsDouble();
  if (format == "int3" && w.hasStaticShape() && w.getRank() == 2 && w.getDimSize(1) % 12)
    return emitOpError("an int3 weight stores 12 bytes per 32 weights; ") << w.getDimSize(1) << " bytes per row is not whole blocks";
  if (w.getRank() != 2 || !w.hasStaticShape()) return emitOpError("the weight must be a static 2-D tensor");
  const int64_t out = w.getDimSize(0), in = getInFeatures(), group = getGroupSize();
  auto x = shapeOf(getInput());
  if (x.empty() || (x.back() != kDynamic && x.back() != in))
    return emitOpError("input has ") << (x.empty() ? 0 : x.back()) << " features but the weight expects " << in;
  if (storage) {
    if (getScales() || getMins()) return emitOpError("a ") << format << " weight has no scales or mins";
  } else {
    if (group <= 0 || (subByte && (group % 32 || in % 32)))
      return emitOpError("group_size ") << group << " is invalid for " << in << " input features"
                                        << (subByte ? " (" + format.str() + " needs multiples of 32)" : std::string());
    const int64_t groups = (in + group - 1) / group;
    if (!getScales()) return emitOpError("a ") << format << " weight needs scales";
    for (Value v : {getScales(), getMins()}) {
      if (!v) continue;
      auto t = cast<RankedTensorType>(v.getType());
      if (!t.getElementType().isF16() || t.getShape() != ArrayRef<int64_t>{out, groups})
        return emitOpError("scales and mins must be f16 [") << out << ", " << groups << "], got " << t;
    }
    if (getMins() && !subByte) return emitOpError("only int4 and int3 weights have mins");
    if (format == "w8a8" && group != in)
      return emitOpError("a w8a8 weight has one scale per output channel (group_size ") << in << "), got " << group;
  }
  if (Value a = getActScales()) {
    auto t = cast<RankedTensorType>(a.getType());
    if (!t.getElementType().isF32() || t.getShape() != ArrayRef<int64_t>{in})
      return emitOpError("act_scales must be f32 [") << in << "], got " << t;
  }
  if (getBias()) {
    auto b = shapeOf(getBias());
    if (b.size() != 1 || (b[0] != kDynamic && b[0] != out)) return emitOpError("bias must be [") << out << "]";
  }
  if (auto block = getActBlockAttr()) {
    if (block.getInt() != 32) return emitOpError("act_block must be 32 (int8 activations per block of 32), got ") << block.getInt();
    if (format != "int8" && format != "int4")
      return emitOpError("int8 activations (act_block) apply to int8 and int4 weights, not ") << format;
    if (format == "int8" && group % 32 && group < in)
      return emitOpError("int8 activations need int8 groups that are multiples of 32 (or one per row), got group_size ") << group;
  }
  return success();
}

LogicalResult SparseLinearOp::verify() {
  StringRef pattern = getPattern(), format = getValuesFormat();
  if (pattern != "2:4" && pattern != "4:8" && pattern != "unstructured")
    return emitOpError("pattern must be 2:4, 4:8 or unstructured, got '") << pattern << "'";
  if (format != "f32" && format != "int4") return emitOpError("values_format must be f32 or int4, got '") << format << "'";
  const int64_t in = getInFeatures(), group = getGroupSize();
  if (in <= 0 || in % 32) return emitOpError("in_features must be a positive multiple of 32, got ") << in;
  auto v = cast<RankedTensorType>(getValues().getType()), idx = cast<RankedTensorType>(getIndices().getType());
  if (pattern == "unstructured") {
    // A bitmap per row (bit c of byte c/8) and the kept values of all rows, row after row.
    if (format != "f32" || getScales()) return emitOpError("unstructured sparsity stores f32 values");
    if (!v.hasStaticShape() || v.getRank() != 1 || !v.getElementType().isF32())
      return emitOpError("unstructured values must be a static 1-D f32 tensor, got ") << v;
    if (!idx.hasStaticShape() || idx.getRank() != 2 || !idx.getElementType().isUnsignedInteger(8) || idx.getDimSize(1) != in / 8)
      return emitOpError("the bitmap must be ui8 [out, ") << in / 8 << "], got " << idx;
    if (v.getDimSize(0) > idx.getDimSize(0) * in) return emitOpError("more values than weights");
    auto x = shapeOf(getInput());
    if (x.empty() || (x.back() != kDynamic && x.back() != in))
      return emitOpError("input has ") << (x.empty() ? 0 : x.back()) << " features but the layer expects " << in;
    if (getBias()) {
      auto b = shapeOf(getBias());
      if (b.size() != 1 || (b[0] != kDynamic && b[0] != idx.getDimSize(0))) return emitOpError("bias must be [") << idx.getDimSize(0) << "]";
    }
    return success();
  }
  if (!v.hasStaticShape() || v.getRank() != 2 || !idx.hasStaticShape() || idx.getRank() != 2)
    return emitOpError("values and indices must be static 2-D tensors");
  const int64_t out = v.getDimSize(0);
  const bool int4 = format == "int4";
  if (int4 ? !v.getElementType().isUnsignedInteger(8) : !v.getElementType().isF32())
    return emitOpError("") << format << " values must be " << (int4 ? "ui8" : "f32") << ", got " << v.getElementType();
  if (v.getDimSize(1) != (int4 ? in / 4 : in / 2))
    return emitOpError("values must be [") << out << ", " << (int4 ? in / 4 : in / 2) << "] for " << in << " input features, got " << v;
  const int64_t indexBytes = pattern == "2:4" ? in / 8 : in / 4;
  if (!idx.getElementType().isUnsignedInteger(8) || idx.getShape() != ArrayRef<int64_t>{out, indexBytes})
    return emitOpError("indices must be ui8 [") << out << ", " << indexBytes << "], got " << idx;
  if (int4) {
    if (group <= 0 || group % 32) return emitOpError("group_size must be a positive multiple of 32, got ") << group;
    const int64_t groups = (in + group - 1) / group;
    auto s = getScales() ? cast<RankedTensorType>(getScales().getType()) : RankedTensorType();
    if (!s || !s.getElementType().isF16() || s.getShape() != ArrayRef<int64_t>{out, groups})
      return emitOpError("int4 values need f16 scales [") << out << ", " << groups << "]";
  } else if (getScales()) {
    return emitOpError("f32 values have no scales");
  }
  auto x = shapeOf(getInput());
  if (x.empty() || (x.back() != kDynamic && x.back() != in))
    return emitOpError("input has ") << (x.empty() ? 0 : x.back()) << " features but the layer expects " << in;
  if (getBias()) {
    auto b = shapeOf(getBias());
    if (b.size() != 1 || (b[0] != kDynamic && b[0] != out)) return emitOpError("bias must be [") << out << "]";
  }
  return success();
}

LogicalResult MatMulOp::verify() {
  auto a = shapeOf(getLhs()), b = shapeOf(getRhs());
  int64_t k1 = a.back(), k2 = b.size() == 1 ? b[0] : b[b.size() - 2];
  if (k1 != kDynamic && k2 != kDynamic && k1 != k2)
    return emitOpError("contraction dimensions differ: lhs ") << shapeToString(a) << ", rhs " << shapeToString(b);
  return success();
}

LogicalResult AttentionOp::verify() {
  int64_t heads = getNumHeads(), kvHeads = getNumKvHeads();
  if (heads <= 0 || kvHeads <= 0 || heads % kvHeads)
    return emitOpError("num_heads (") << heads << ") must be a positive multiple of num_kv_heads (" << kvHeads << ")";
  auto q = shapeOf(getQuery()), k = shapeOf(getKey()), v = shapeOf(getValue());
  if (q.size() != 4 || k.size() != 4 || v.size() != 4)
    return emitOpError("query, key and value must be [batch, heads, seq, head_dim]");
  if (q[1] != kDynamic && q[1] != heads)
    return emitOpError("query has ") << q[1] << " heads but num_heads is " << heads;
  if (k[1] != kDynamic && k[1] != kvHeads)
    return emitOpError("key has ") << k[1] << " heads but num_kv_heads is " << kvHeads;
  if (q[3] != kDynamic && k[3] != kDynamic && q[3] != k[3])
    return emitOpError("query head_dim ") << q[3] << " differs from key head_dim " << k[3];
  if (getMask() && shapeOf(getMask()).size() > 4)
    return emitOpError("mask must broadcast to [batch, heads, q_seq, k_seq]");
  return success();
}

static LogicalResult verifyNormScale(Operation *op, Value input, Value scale, StringRef what) {
  auto in = shapeOf(input), s = shapeOf(scale);
  if (in.empty()) return op->emitOpError("input must have rank >= 1");
  if (s.size() != 1 || (s[0] != kDynamic && in.back() != kDynamic && s[0] != in.back()))
    return op->emitOpError() << what << " must be [" << in.back() << "], got " << shapeToString(s);
  return success();
}

LogicalResult LayerNormOp::verify() {
  if (failed(verifyNormScale(*this, getInput(), getScale(), "scale"))) return failure();
  if (getBias() && failed(verifyNormScale(*this, getInput(), getBias(), "bias"))) return failure();
  if (getAxis() != -1 && getAxis() != rankedType(getInput()).getRank() - 1)
    return emitOpError("only normalization over the last dimension is supported, axis is ") << getAxis();
  return success();
}

LogicalResult RmsNormOp::verify() { return verifyNormScale(*this, getInput(), getScale(), "scale"); }

LogicalResult RotaryOp::verify() {
  auto in = shapeOf(getInput()), c = shapeOf(getCos()), s = shapeOf(getSin());
  if (in.empty()) return emitOpError("input must have rank >= 1");
  const int64_t d = in.back();
  if (d != kDynamic && d % 2) return emitOpError("the rotated dimension must be even, got ") << d;
  if (c.size() != s.size()) return emitOpError("cos ") << shapeToString(c) << " and sin " << shapeToString(s) << " differ";
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] != kDynamic && s[i] != kDynamic && c[i] != s[i])
      return emitOpError("cos ") << shapeToString(c) << " and sin " << shapeToString(s) << " differ";
  if (c.empty() || c.size() > in.size()) return emitOpError("cos ") << shapeToString(c) << " must have rank 1.." << in.size();
  if (c.back() != kDynamic && d != kDynamic && c.back() != d)
    return emitOpError("cos/sin last dimension ") << c.back() << " differs from the input's " << d;
  // Broadcasting must not grow the input: each cos dim is 1 or the input's.
  for (size_t i = 0; i < c.size(); ++i) {
    const int64_t a = c[c.size() - 1 - i], b = in[in.size() - 1 - i];
    if (a != kDynamic && a != 1 && b != kDynamic && a != b)
      return emitOpError("cos/sin ") << shapeToString(c) << " do not broadcast to the input " << shapeToString(in);
  }
  return success();
}

LogicalResult GeluOp::verify() {
  if (getApproximate() != "none" && getApproximate() != "tanh")
    return emitOpError("approximate must be \"none\" or \"tanh\", got \"") << getApproximate() << "\"";
  return success();
}

LogicalResult SoftmaxOp::verify() {
  if (!normalizeAxis(getAxis(), rankedType(getInput()).getRank()))
    return emitOpError("axis ") << getAxis() << " is out of range";
  return success();
}

LogicalResult QuantizedEmbeddingOp::verify() {
  auto table = cast<RankedTensorType>(getTable().getType());
  if (getFormat() != "int8") return emitOpError("unknown format '") << getFormat() << "' (expected int8)";
  if (table.getRank() != 2 || !table.hasStaticShape() || !table.getElementType().isSignlessInteger(8))
    return emitOpError("the table must be a static 2-D i8 tensor, got ") << table;
  const int64_t rows = table.getDimSize(0), dim = table.getDimSize(1), group = getGroupSize();
  if (group <= 0) return emitOpError("group_size must be positive, got ") << group;
  auto scales = cast<RankedTensorType>(getScales().getType());
  if (!scales.getElementType().isF16() || scales.getShape() != ArrayRef<int64_t>{rows, (dim + group - 1) / group})
    return emitOpError("scales must be f16 [") << rows << ", " << (dim + group - 1) / group << "], got " << scales;
  if (!isa<IntegerType>(cast<RankedTensorType>(getIndices().getType()).getElementType()))
    return emitOpError("indices must be integers");
  return success();
}

LogicalResult EmbeddingOp::verify() {
  if (shapeOf(getTable()).size() != 2) return emitOpError("table must be 2-D [vocab, dim]");
  if (!rankedType(getIndices()).getElementType().isInteger())
    return emitOpError("indices must be integers");
  return success();
}

LogicalResult PositionsOp::verify() {
  if (!normalizeAxis(getAxis(), rankedType(getReference()).getRank()))
    return emitOpError("axis ") << getAxis() << " is out of range";
  return success();
}

static LogicalResult verifyBroadcast(Operation *op) {
  SmallVector<int64_t> shape;
  for (Value v : op->getOperands()) {
    auto next = broadcastShapes(shape, shapeOf(v));
    if (failed(next))
      return op->emitOpError("operand shapes do not broadcast: ") << shapeToString(shape) << " vs "
                                                                  << shapeToString(shapeOf(v));
    shape = *next;
  }
  return success();
}

#define LATHE_VERIFY_BROADCAST(OP) \
  LogicalResult OP::verify() { return verifyBroadcast(*this); }
LATHE_VERIFY_BROADCAST(AddOp)
LATHE_VERIFY_BROADCAST(SubOp)
LATHE_VERIFY_BROADCAST(MulOp)
LATHE_VERIFY_BROADCAST(DivOp)
LATHE_VERIFY_BROADCAST(PowOp)
LATHE_VERIFY_BROADCAST(MaxOp)
LATHE_VERIFY_BROADCAST(MinOp)
LATHE_VERIFY_BROADCAST(AndOp)
LATHE_VERIFY_BROADCAST(OrOp)
LATHE_VERIFY_BROADCAST(EqualOp)
LATHE_VERIFY_BROADCAST(LessOp)
LATHE_VERIFY_BROADCAST(LessEqualOp)
LATHE_VERIFY_BROADCAST(GreaterOp)
LATHE_VERIFY_BROADCAST(GreaterEqualOp)
#undef LATHE_VERIFY_BROADCAST

LogicalResult WhereOp::verify() {
  if (!rankedType(getCondition()).getElementType().isInteger(1))
    return emitOpError("condition must be i1, got ") << rankedType(getCondition()).getElementType();
  return verifyBroadcast(*this);
}

static LogicalResult verifyAxes(Operation *op, ArrayRef<int64_t> axes, int64_t rank) {
  for (int64_t a : axes)
    if (!normalizeAxis(a, rank)) return op->emitOpError("axis ") << a << " is out of range for rank " << rank;
  return success();
}

#define LATHE_VERIFY_REDUCE(OP) \
  LogicalResult OP::verify() { return verifyAxes(*this, getAxes(), rankedType(getInput()).getRank()); }
LATHE_VERIFY_REDUCE(ReduceMeanOp)
LATHE_VERIFY_REDUCE(ReduceSumOp)
LATHE_VERIFY_REDUCE(ReduceMaxOp)
LATHE_VERIFY_REDUCE(ReduceMinOp)
#undef LATHE_VERIFY_REDUCE

static LogicalResult verifyIndexVector(Operation *op, Value v, StringRef name) {
  auto t = rankedType(v);
  if (t.getRank() > 1 || !t.getElementType().isInteger(64))
    return op->emitOpError() << name << " must be a 1-D i64 tensor, got " << t;
  return success();
}

LogicalResult ReshapeOp::verify() { return verifyIndexVector(*this, getShape(), "shape"); }
LogicalResult ExpandOp::verify() { return verifyIndexVector(*this, getShape(), "shape"); }
LogicalResult FillOp::verify() {
  if (cast<ShapedType>(getValue().getType()).getNumElements() != 1)
    return emitOpError("value must hold exactly one element");
  return verifyIndexVector(*this, getShape(), "shape");
}

LogicalResult TransposeOp::verify() {
  if (getPerm().size() != size_t(rankedType(getInput()).getRank()))
    return emitOpError("permutation length ") << getPerm().size() << " differs from rank "
                                              << rankedType(getInput()).getRank();
  return success();
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty()) return emitOpError("needs at least one input");
  return verifyAxes(*this, {getAxis()}, rankedType(getInputs()[0]).getRank());
}

LogicalResult SliceOp::verify() {
  if (failed(verifyIndexVector(*this, getStarts(), "starts")) || failed(verifyIndexVector(*this, getEnds(), "ends")) ||
      failed(verifyIndexVector(*this, getAxes(), "axes")) || failed(verifyIndexVector(*this, getSteps(), "steps")))
    return failure();
  return success();
}

LogicalResult SplitOp::verify() {
  if (getSizes().size() != getNumResults())
    return emitOpError("has ") << getSizes().size() << " sizes but " << getNumResults() << " results";
  return verifyAxes(*this, {getAxis()}, rankedType(getInput()).getRank());
}

LogicalResult SqueezeOp::verify() { return verifyAxes(*this, getAxes(), rankedType(getInput()).getRank()); }
LogicalResult UnsqueezeOp::verify() {
  return verifyAxes(*this, getAxes(), rankedType(getInput()).getRank() + getAxes().size());
}

LogicalResult RangeOp::verify() {
  for (Value v : {getStart(), getLimit(), getDelta()})
    if (rankedType(v).getNumElements() != 1 && rankedType(v).hasStaticShape())
      return emitOpError("start, limit and delta must be scalars");
  return success();
}

LogicalResult TriluOp::verify() {
  if (rankedType(getInput()).getRank() < 2) return emitOpError("input must have rank >= 2");
  return success();
}

LogicalResult ScatterNdOp::verify() {
  auto data = shapeOf(getData()), indices = shapeOf(getIndices()), updates = shapeOf(getUpdates());
  if (!rankedType(getIndices()).getElementType().isInteger()) return emitOpError("indices must be integers");
  if (indices.empty()) return emitOpError("indices must have rank >= 1");
  int64_t k = indices.back();
  if (k == kDynamic) return emitOpError("the last dimension of indices must be static");
  if (k > int64_t(data.size())) return emitOpError("index tuples of length ") << k << " exceed the data rank " << data.size();
  if (int64_t(updates.size()) != int64_t(indices.size()) - 1 + int64_t(data.size()) - k)
    return emitOpError("updates must have rank ") << indices.size() - 1 + data.size() - k;
  return success();
}

LogicalResult GatherOp::verify() {
  if (!rankedType(getIndices()).getElementType().isInteger())
    return emitOpError("indices must be integers");
  return verifyAxes(*this, {getAxis()}, rankedType(getInput()).getRank());
}

} // namespace lathe::ir

#define GET_OP_CLASSES
#include "dialects/lathe/LatheOps.cpp.inc"
