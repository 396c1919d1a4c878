// Folders: constant evaluation on the host for the small tensors exporters
// compute from shapes and masks, plus the no-op identities (x reshaped to its
// own shape, an identity permutation, a cast to the same type).
#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"

#include <cmath>
#include <functional>
#include <numeric>

using namespace mlir;

namespace lathe::ir {
namespace {

RankedTensorType staticResultType(Operation *op, unsigned index = 0) {
  auto t = dyn_cast<RankedTensorType>(op->getResult(index).getType());
  return t && t.hasStaticShape() ? t : RankedTensorType();
}

std::optional<HostTensor> host(Attribute attr) { return readHostTensor(attr); }

SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t i = int64_t(shape.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/// Offset into `inShape` (right-aligned, broadcast) of the output element `linear`.
int64_t broadcastOffset(int64_t linear, ArrayRef<int64_t> outShape, ArrayRef<int64_t> inShape) {
  int64_t offset = 0, stride = 1;
  int64_t rankDiff = outShape.size() - inShape.size();
  for (int64_t d = int64_t(outShape.size()) - 1; d >= 0; --d) {
    int64_t coord = linear % outShape[d];
    linear /= outShape[d];
    if (d >= rankDiff) {
      int64_t inDim = inShape[d - rankDiff];
      if (inDim != 1) offset += coord * stride;
      stride *= inDim;
    }
  }
  return offset;
}

HostTensor emptyLike(RankedTensorType type) {
  HostTensor out;
  out.shape.assign(type.getShape().begin(), type.getShape().end());
  out.elementType = type.getElementType();
  if (out.isFloat()) out.floats.resize(out.numElements());
  else out.ints.resize(out.numElements());
  return out;
}

void setValue(HostTensor &t, int64_t i, double v) {
  if (t.isFloat()) t.floats[i] = v;
  else if (t.elementType.isInteger(1)) t.ints[i] = v != 0;
  else t.ints[i] = int64_t(v);
}

OpFoldResult finish(Operation *op, const HostTensor &out) {
  auto type = staticResultType(op);
  if (!type) return {};
  return makeElementsAttr(type, out);
}

OpFoldResult foldUnary(Operation *op, Attribute input, const std::function<double(double)> &fn) {
  auto type = staticResultType(op);
  auto in = host(input);
  if (!type || !in) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) setValue(out, i, fn(in->getDouble(i)));
  return finish(op, out);
}

/// Elementwise n-ary evaluation with broadcasting. Integer inputs stay exact
/// through int64 arithmetic when every input is an integer tensor.
OpFoldResult foldElementwise(Operation *op, ArrayRef<Attribute> inputs,
                             const std::function<double(ArrayRef<double>)> &floatFn,
                             const std::function<int64_t(ArrayRef<int64_t>)> &intFn) {
  auto type = staticResultType(op);
  if (!type) return {};
  SmallVector<HostTensor> ins;
  bool allInts = true;
  for (Attribute a : inputs) {
    auto h = host(a);
    if (!h) return {};
    allInts &= !h->isFloat();
    ins.push_back(std::move(*h));
  }
  HostTensor out = emptyLike(type);
  SmallVector<double> fargs(ins.size());
  SmallVector<int64_t> iargs(ins.size());
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    for (size_t k = 0; k < ins.size(); ++k) {
      int64_t off = broadcastOffset(i, out.shape, ins[k].shape);
      if (allInts) iargs[k] = ins[k].ints[off];
      else fargs[k] = ins[k].getDouble(off);
    }
    if (allInts) {
      int64_t r = intFn(iargs);
      if (out.isFloat()) out.floats[i] = double(r);
      else out.ints[i] = out.elementType.isInteger(1) ? (r != 0) : r;
    } else {
      setValue(out, i, floatFn(fargs));
    }
  }
  return finish(op, out);
}

OpFoldResult sameTypeInput(Operation *op, Value input) {
  return input.getType() == op->getResult(0).getType() &&
                 cast<RankedTensorType>(input.getType()).hasStaticShape()
             ? OpFoldResult(input)
             : OpFoldResult();
}

/// Same data, new (static) result shape: reshape, squeeze, unsqueeze.
OpFoldResult foldRelabel(Operation *op, Attribute input) {
  auto type = staticResultType(op);
  auto in = host(input);
  if (!type || !in) return {};
  in->shape.assign(type.getShape().begin(), type.getShape().end());
  return finish(op, *in);
}

} // namespace

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }
OpFoldResult IdentityOp::fold(FoldAdaptor) { return getInput(); }

OpFoldResult SqrtOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::sqrt(x); }); }
OpFoldResult ErfOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::erf(x); }); }
OpFoldResult TanhOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::tanh(x); }); }
OpFoldResult ExpOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::exp(x); }); }
OpFoldResult LogOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::log(x); }); }
OpFoldResult CosOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::cos(x); }); }
OpFoldResult SinOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::sin(x); }); }
OpFoldResult ReluOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return x > 0 ? x : 0; }); }
OpFoldResult SigmoidOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return 1 / (1 + std::exp(-x)); }); }
OpFoldResult SiluOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return x / (1 + std::exp(-x)); }); }
OpFoldResult NegOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return -x; }); }
OpFoldResult AbsOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return std::abs(x); }); }
OpFoldResult ReciprocalOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return 1 / x; }); }
OpFoldResult NotOp::fold(FoldAdaptor a) { return foldUnary(*this, a.getInput(), [](double x) { return x == 0 ? 1 : 0; }); }

OpFoldResult CastOp::fold(FoldAdaptor a) {
  if (getInput().getType() == getType()) return getInput();
  bool toInt = getTo().isInteger() && !getTo().isInteger(1);
  return foldUnary(*this, a.getInput(), [toInt](double x) { return toInt ? std::trunc(x) : x; });
}

#define LATHE_FOLD_BINARY(OP, FLOAT_EXPR, INT_EXPR)                                             \
  OpFoldResult OP::fold(FoldAdaptor a) {                                                        \
    return foldElementwise(                                                                     \
        *this, {a.getLhs(), a.getRhs()},                                                        \
        [](ArrayRef<double> v) -> double { double x = v[0], y = v[1]; return FLOAT_EXPR; },     \
        [](ArrayRef<int64_t> v) -> int64_t { int64_t x = v[0], y = v[1]; (void)x; (void)y; return INT_EXPR; }); \
  }
LATHE_FOLD_BINARY(AddOp, x + y, x + y)
LATHE_FOLD_BINARY(SubOp, x - y, x - y)
LATHE_FOLD_BINARY(MulOp, x * y, x * y)
LATHE_FOLD_BINARY(DivOp, x / y, y == 0 ? 0 : x / y)
LATHE_FOLD_BINARY(PowOp, std::pow(x, y), int64_t(std::pow(double(x), double(y))))
LATHE_FOLD_BINARY(MaxOp, std::max(x, y), std::max(x, y))
LATHE_FOLD_BINARY(MinOp, std::min(x, y), std::min(x, y))
LATHE_FOLD_BINARY(AndOp, (x != 0 && y != 0) ? 1 : 0, (x != 0 && y != 0) ? 1 : 0)
LATHE_FOLD_BINARY(OrOp, (x != 0 || y != 0) ? 1 : 0, (x != 0 || y != 0) ? 1 : 0)
LATHE_FOLD_BINARY(EqualOp, x == y ? 1 : 0, x == y ? 1 : 0)
LATHE_FOLD_BINARY(LessOp, x < y ? 1 : 0, x < y ? 1 : 0)
LATHE_FOLD_BINARY(LessEqualOp, x <= y ? 1 : 0, x <= y ? 1 : 0)
LATHE_FOLD_BINARY(GreaterOp, x > y ? 1 : 0, x > y ? 1 : 0)
LATHE_FOLD_BINARY(GreaterEqualOp, x >= y ? 1 : 0, x >= y ? 1 : 0)
#undef LATHE_FOLD_BINARY

OpFoldResult WhereOp::fold(FoldAdaptor a) {
  return foldElementwise(
      *this, {a.getCondition(), a.getLhs(), a.getRhs()},
      [](ArrayRef<double> v) { return v[0] != 0 ? v[1] : v[2]; },
      [](ArrayRef<int64_t> v) { return v[0] != 0 ? v[1] : v[2]; });
}

static OpFoldResult foldReduce(Operation *op, Attribute input, ArrayRef<int64_t> axes, double init,
                               const std::function<double(double, double)> &combine, bool mean) {
  auto type = staticResultType(op);
  auto in = host(input);
  if (!type || !in) return {};
  int64_t rank = in->shape.size();
  SmallVector<bool> reduced(rank, axes.empty());
  for (int64_t a : axes) reduced[*normalizeAxis(a, rank)] = true;
  SmallVector<int64_t> keptShape;
  for (int64_t d = 0; d < rank; ++d) keptShape.push_back(reduced[d] ? 1 : in->shape[d]);
  HostTensor out = emptyLike(type);
  std::vector<double> acc(out.numElements(), init);
  std::vector<int64_t> counts(out.numElements(), 0);
  auto strides = stridesOf(keptShape);
  for (int64_t i = 0, n = in->numElements(); i < n; ++i) {
    int64_t rem = i, outIndex = 0;
    for (int64_t d = rank - 1; d >= 0; --d) {
      int64_t coord = rem % in->shape[d];
      rem /= in->shape[d];
      if (!reduced[d]) outIndex += coord * strides[d];
    }
    acc[outIndex] = combine(acc[outIndex], in->getDouble(i));
    counts[outIndex]++;
  }
  for (int64_t i = 0, n = out.numElements(); i < n; ++i)
    setValue(out, i, mean && counts[i] ? acc[i] / counts[i] : acc[i]);
  return finish(op, out);
}

OpFoldResult ReduceMeanOp::fold(FoldAdaptor a) {
  return foldReduce(*this, a.getInput(), getAxes(), 0, std::plus<double>(), true);
}
OpFoldResult ReduceSumOp::fold(FoldAdaptor a) {
  return foldReduce(*this, a.getInput(), getAxes(), 0, std::plus<double>(), false);
}
OpFoldResult ReduceMaxOp::fold(FoldAdaptor a) {
  return foldReduce(*this, a.getInput(), getAxes(), -INFINITY, [](double x, double y) { return std::max(x, y); }, false);
}
OpFoldResult ReduceMinOp::fold(FoldAdaptor a) {
  return foldReduce(*this, a.getInput(), getAxes(), INFINITY, [](double x, double y) { return std::min(x, y); }, false);
}

OpFoldResult ShapeOfOp::fold(FoldAdaptor) {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto type = staticResultType(*this);
  if (!in.hasStaticShape() || !type) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0; i < in.getRank(); ++i) out.ints[i] = in.getDimSize(i);
  return finish(*this, out);
}

OpFoldResult ReshapeOp::fold(FoldAdaptor a) {
  if (OpFoldResult same = sameTypeInput(*this, getInput())) return same;
  return foldRelabel(*this, a.getInput());
}
OpFoldResult SqueezeOp::fold(FoldAdaptor a) {
  if (getAxes().empty() && getInput().getType() == getType()) return getInput();
  return foldRelabel(*this, a.getInput());
}
OpFoldResult UnsqueezeOp::fold(FoldAdaptor a) { return foldRelabel(*this, a.getInput()); }

OpFoldResult TransposeOp::fold(FoldAdaptor a) {
  auto perm = getPerm();
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) identity &= perm[i] == int64_t(i);
  if (identity) return getInput();
  auto type = staticResultType(*this);
  auto in = host(a.getInput());
  if (!type || !in) return {};
  HostTensor out = emptyLike(type);
  auto inStrides = stridesOf(in->shape);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    int64_t rem = i, offset = 0;
    for (int64_t d = int64_t(perm.size()) - 1; d >= 0; --d) {
      int64_t coord = rem % out.shape[d];
      rem /= out.shape[d];
      offset += coord * inStrides[perm[d]];
    }
    setValue(out, i, in->getDouble(offset));
    if (!out.isFloat()) out.ints[i] = in->getInt(offset);
  }
  return finish(*this, out);
}

OpFoldResult ConcatOp::fold(FoldAdaptor a) {
  if (getInputs().size() == 1 && getInputs()[0].getType() == getType()) return getInputs()[0];
  auto type = staticResultType(*this);
  if (!type) return {};
  SmallVector<HostTensor> ins;
  for (Attribute attr : a.getInputs()) {
    auto h = host(attr);
    if (!h) return {};
    ins.push_back(std::move(*h));
  }
  int64_t axis = *normalizeAxis(getAxis(), type.getRank());
  HostTensor out = emptyLike(type);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= type.getDimSize(d);
  for (int64_t d = axis + 1; d < type.getRank(); ++d) inner *= type.getDimSize(d);
  int64_t pos = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (const HostTensor &in : ins) {
      int64_t chunk = in.shape[axis] * inner;
      for (int64_t j = 0; j < chunk; ++j, ++pos) {
        int64_t src = o * chunk + j;
        if (out.isFloat()) out.floats[pos] = in.getDouble(src);
        else out.ints[pos] = in.getInt(src);
      }
    }
  return finish(*this, out);
}

OpFoldResult SliceOp::fold(FoldAdaptor a) {
  auto type = staticResultType(*this);
  if (!type) return {};
  auto in = host(a.getInput());
  auto starts = getConstantInts(getStarts()), axes = getConstantInts(getAxes());
  auto steps = getConstantInts(getSteps());
  if (!starts || !axes || !steps) return {};
  if (type == getInput().getType()) {
    bool allUnitSteps = llvm::all_of(*steps, [](int64_t s) { return s == 1; });
    bool allZeroStarts = llvm::all_of(*starts, [](int64_t s) { return s == 0; });
    if (allUnitSteps && allZeroStarts) return getInput();
  }
  if (!in) return {};
  int64_t rank = in->shape.size();
  SmallVector<int64_t> begin(rank, 0), step(rank, 1);
  for (size_t i = 0; i < axes->size(); ++i) {
    int64_t axis = *normalizeAxis((*axes)[i], rank);
    int64_t dim = in->shape[axis];
    int64_t s = (*starts)[i];
    if (s < 0) s += dim;
    step[axis] = (*steps)[i];
    begin[axis] = step[axis] > 0 ? std::clamp<int64_t>(s, 0, dim) : std::clamp<int64_t>(s, 0, dim - 1);
  }
  HostTensor out = emptyLike(type);
  auto inStrides = stridesOf(in->shape);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    int64_t rem = i, offset = 0;
    for (int64_t d = rank - 1; d >= 0; --d) {
      int64_t coord = rem % out.shape[d];
      rem /= out.shape[d];
      offset += (begin[d] + coord * step[d]) * inStrides[d];
    }
    if (out.isFloat()) out.floats[i] = in->getDouble(offset);
    else out.ints[i] = in->getInt(offset);
  }
  return finish(*this, out);
}

OpFoldResult ExpandOp::fold(FoldAdaptor a) {
  if (OpFoldResult same = sameTypeInput(*this, getInput())) return same;
  auto type = staticResultType(*this);
  auto in = host(a.getInput());
  if (!type || !in) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    int64_t off = broadcastOffset(i, out.shape, in->shape);
    if (out.isFloat()) out.floats[i] = in->getDouble(off);
    else out.ints[i] = in->getInt(off);
  }
  return finish(*this, out);
}

OpFoldResult FillOp::fold(FoldAdaptor) {
  auto type = staticResultType(*this);
  auto value = host(getValue());
  if (!type || !value) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    if (out.isFloat()) out.floats[i] = value->getDouble(0);
    else out.ints[i] = value->getInt(0);
  }
  return finish(*this, out);
}

OpFoldResult RangeOp::fold(FoldAdaptor) {
  auto type = staticResultType(*this);
  auto start = getConstantScalar(getStart()), delta = getConstantScalar(getDelta());
  if (!type || !start || !delta) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) setValue(out, i, *start + double(i) * *delta);
  return finish(*this, out);
}

OpFoldResult TriluOp::fold(FoldAdaptor a) {
  auto type = staticResultType(*this);
  auto in = host(a.getInput());
  auto k = getConstantScalar(getK());
  if (!type || !in || !k) return {};
  HostTensor out = *in;
  int64_t rows = in->shape[in->shape.size() - 2], cols = in->shape.back();
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) {
    int64_t c = i % cols, r = (i / cols) % rows;
    bool keep = getUpper() ? c - r >= int64_t(*k) : c - r <= int64_t(*k);
    if (!keep) setValue(out, i, 0);
  }
  return finish(*this, out);
}

OpFoldResult GatherOp::fold(FoldAdaptor a) {
  auto type = staticResultType(*this);
  auto in = host(a.getInput());
  auto idx = host(a.getIndices());
  if (!type || !in || !idx) return {};
  int64_t axis = *normalizeAxis(getAxis(), in->shape.size());
  int64_t outer = 1, inner = 1, dim = in->shape[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= in->shape[d];
  for (size_t d = axis + 1; d < in->shape.size(); ++d) inner *= in->shape[d];
  HostTensor out = emptyLike(type);
  int64_t count = idx->numElements(), pos = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < count; ++j) {
      int64_t index = idx->getInt(j);
      if (index < 0) index += dim;
      if (index < 0 || index >= dim) return {};
      for (int64_t r = 0; r < inner; ++r, ++pos) {
        int64_t src = (o * dim + index) * inner + r;
        if (out.isFloat()) out.floats[pos] = in->getDouble(src);
        else out.ints[pos] = in->getInt(src);
      }
    }
  return finish(*this, out);
}

OpFoldResult PositionsOp::fold(FoldAdaptor) {
  auto type = staticResultType(*this);
  if (!type) return {};
  HostTensor out = emptyLike(type);
  for (int64_t i = 0, n = out.numElements(); i < n; ++i) out.ints[i] = i;
  return finish(*this, out);
}

OpFoldResult ScatterNdOp::fold(FoldAdaptor a) {
  auto type = staticResultType(*this);
  auto data = host(a.getData()), indices = host(a.getIndices()), updates = host(a.getUpdates());
  if (!type || !data || !indices || !updates) return {};
  int64_t k = indices->shape.back();
  int64_t tuples = indices->numElements() / std::max<int64_t>(k, 1);
  int64_t slice = 1;
  for (size_t d = k; d < data->shape.size(); ++d) slice *= data->shape[d];
  auto strides = stridesOf(data->shape);
  HostTensor out = *data;
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t offset = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t index = indices->getInt(t * k + j), dim = data->shape[j];
      if (index < 0) index += dim;
      if (index < 0 || index >= dim) return {};
      offset += index * strides[j];
    }
    for (int64_t e = 0; e < slice; ++e) {
      if (out.isFloat()) out.floats[offset + e] = updates->getDouble(t * slice + e);
      else out.ints[offset + e] = updates->getInt(t * slice + e);
    }
  }
  return finish(*this, out);
}

} // namespace lathe::ir
