#include "passes/simplify/SimplifyUtils.h"

#include "dialects/lathe/ShapeHelpers.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {

namespace {
/// Memo for one top-level query: canonicalDim and symbolicValue call each
/// other across layers, which is exponential without it. The IR does not
/// change during a query, so entries stay valid for its duration.
struct ShapeMemo {
  llvm::DenseMap<std::pair<void *, int64_t>, DimRef> dims;
  llvm::DenseMap<void *, std::optional<SmallVector<SymbolicElement>>> values;
};
DimRef canonicalDimImpl(Value value, int64_t d, ShapeMemo &memo);
std::optional<SmallVector<SymbolicElement>> symbolicValueImpl(Value value, ShapeMemo &memo);

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }
int64_t dimOf(Value v, int64_t d) { return cast<RankedTensorType>(v.getType()).getDimSize(d); }

/// For broadcasting ops: the operand whose dimension decides the result's.
DimRef broadcastSource(Value result, int64_t d, ValueRange operands, ShapeMemo &memo) {
  int64_t rank = rankOf(result);
  for (Value operand : operands) {
    int64_t offset = rank - rankOf(operand);
    int64_t od = d - offset;
    if (od < 0) continue;
    if (dimOf(operand, od) != 1) return canonicalDimImpl(operand, od, memo);
  }
  return {result, d};
}

DimRef canonicalDimUncached(Value value, int64_t d, ShapeMemo &memo);

DimRef canonicalDimImpl(Value value, int64_t d, ShapeMemo &memo) {
  auto key = std::make_pair(value.getAsOpaquePointer(), d);
  if (auto it = memo.dims.find(key); it != memo.dims.end()) return it->second;
  DimRef result = canonicalDimUncached(value, d, memo);
  memo.dims[key] = result;
  return result;
}

std::optional<SmallVector<SymbolicElement>> symbolicValueUncached(Value value, ShapeMemo &memo);

std::optional<SmallVector<SymbolicElement>> symbolicValueImpl(Value value, ShapeMemo &memo) {
  void *key = value.getAsOpaquePointer();
  if (auto it = memo.values.find(key); it != memo.values.end()) return it->second;
  auto result = symbolicValueUncached(value, memo);
  memo.values[key] = result;
  return result;
}

/// Graph inputs whose ONNX dims share a dim_param name ("batch",
/// "sequence") have the same size: the first such input dim stands for all.
DimRef canonicalArgumentDim(BlockArgument arg, int64_t d) {
  auto func = dyn_cast_or_null<func::FuncOp>(arg.getOwner()->getParentOp());
  if (!func) return {arg, d};
  auto namesOf = [&](unsigned i) { return func.getArgAttrOfType<ArrayAttr>(i, "lathe.dims"); };
  ArrayAttr mine = namesOf(arg.getArgNumber());
  if (!mine || d >= int64_t(mine.size())) return {arg, d};
  auto name = dyn_cast<StringAttr>(mine[d]);
  if (!name || name.getValue().empty()) return {arg, d};
  for (unsigned i = 0; i < func.getNumArguments(); ++i) {
    ArrayAttr names = namesOf(i);
    if (!names) continue;
    for (size_t k = 0; k < names.size(); ++k)
      if (names[k] == name) return {func.getArgument(i), int64_t(k)};
  }
  return {arg, d};
}

DimRef canonicalDimUncached(Value value, int64_t d, ShapeMemo &memo) {
  if (auto arg = dyn_cast<BlockArgument>(value)) return canonicalArgumentDim(arg, d);
  Operation *op = value.getDefiningOp();
  if (!op || d < 0 || d >= rankOf(value)) return {value, d};
  int64_t rank = rankOf(value);
  if (isa<IdentityOp, SqrtOp, ErfOp, TanhOp, ExpOp, LogOp, CosOp, SinOp, ReluOp, SigmoidOp, SiluOp,
          NegOp, AbsOp, ReciprocalOp, NotOp, CastOp, LayerNormOp, RmsNormOp, GeluOp, SoftmaxOp,
          TriluOp, RotaryOp>(op))
    return canonicalDimImpl(op->getOperand(0), d, memo);
  if (isa<AddOp, SubOp, MulOp, DivOp, PowOp, MaxOp, MinOp, AndOp, OrOp, EqualOp, LessOp,
          LessEqualOp, GreaterOp, GreaterEqualOp, WhereOp>(op))
    return broadcastSource(value, d, op->getOperands(), memo);
  if (auto linear = dyn_cast<LinearOp>(op))
    return d < rank - 1 ? canonicalDimImpl(linear.getInput(), d, memo) : DimRef{value, d};
  if (isa<QuantizedLinearOp, SparseLinearOp>(op))
    return d < rank - 1 ? canonicalDimImpl(op->getOperand(0), d, memo) : DimRef{value, d};
  if (auto mm = dyn_cast<MatMulOp>(op)) {
    if (rankOf(mm.getLhs()) >= 2 && rankOf(mm.getRhs()) >= 2) {
      if (d == rank - 2) return canonicalDimImpl(mm.getLhs(), rankOf(mm.getLhs()) - 2, memo);
      if (d == rank - 1) return canonicalDimImpl(mm.getRhs(), rankOf(mm.getRhs()) - 1, memo);
      // Batch dims broadcast like elementwise operands, minus the matrix dims.
      for (Value operand : {mm.getLhs(), mm.getRhs()}) {
        int64_t od = d - (rank - rankOf(operand));
        if (od >= 0 && dimOf(operand, od) != 1) return canonicalDimImpl(operand, od, memo);
      }
    }
    return {value, d};
  }
  if (auto emb = dyn_cast<EmbeddingOp>(op)) {
    int64_t idxRank = rankOf(emb.getIndices());
    return d < idxRank ? canonicalDimImpl(emb.getIndices(), d, memo) : DimRef{value, d};
  }
  if (auto emb = dyn_cast<QuantizedEmbeddingOp>(op)) {
    int64_t idxRank = rankOf(emb.getIndices());
    return d < idxRank ? canonicalDimImpl(emb.getIndices(), d, memo) : DimRef{value, d};
  }
  if (auto gather = dyn_cast<GatherOp>(op)) {
    int64_t axis = gather.getAxis(), idxRank = rankOf(gather.getIndices());
    if (d < axis) return canonicalDimImpl(gather.getInput(), d, memo);
    if (d < axis + idxRank) return canonicalDimImpl(gather.getIndices(), d - axis, memo);
    return canonicalDimImpl(gather.getInput(), d - idxRank + 1, memo);
  }
  if (auto t = dyn_cast<TransposeOp>(op)) return canonicalDimImpl(t.getInput(), t.getPerm()[d], memo);
  if (auto r = dyn_cast<ReshapeOp>(op)) {
    if (auto target = getConstantInts(r.getShape())) {
      if (d < int64_t(target->size()) && (*target)[d] == 0) return canonicalDimImpl(r.getInput(), d, memo);
    } else if (auto sym = symbolicValueImpl(r.getShape(), memo)) {
      if (d < int64_t(sym->size()) && (*sym)[d].isDim()) return (*sym)[d].dim;
    }
    return {value, d};
  }
  if (auto e = dyn_cast<ExpandOp>(op)) {
    int64_t od = d - (rank - rankOf(e.getInput()));
    if (od >= 0 && dimOf(e.getInput(), od) != 1) return canonicalDimImpl(e.getInput(), od, memo);
    if (auto sym = symbolicValueImpl(e.getShape(), memo)) {
      int64_t sd = d - (rank - int64_t(sym->size()));
      if (sd >= 0 && (*sym)[sd].isDim()) return (*sym)[sd].dim;
    }
    return {value, d};
  }
  if (auto a = dyn_cast<AttentionOp>(op))
    return d < 3 ? canonicalDimImpl(a.getQuery(), d, memo) : canonicalDimImpl(a.getValue(), 3, memo);
  if (auto u = dyn_cast<UnsqueezeOp>(op)) {
    if (llvm::is_contained(u.getAxes(), d)) return {value, d};
    int64_t before = llvm::count_if(u.getAxes(), [&](int64_t a) { return a < d; });
    return canonicalDimImpl(u.getInput(), d - before, memo);
  }
  if (auto s = dyn_cast<SqueezeOp>(op)) {
    int64_t inDim = d;
    SmallVector<int64_t> axes(s.getAxes());
    llvm::sort(axes);
    for (int64_t a : axes)
      if (a <= inDim) ++inDim;
    return canonicalDimImpl(s.getInput(), inDim, memo);
  }
  if (auto c = dyn_cast<ConcatOp>(op))
    return d == c.getAxis() ? DimRef{value, d} : canonicalDimImpl(c.getInputs()[0], d, memo);
  if (auto s = dyn_cast<SliceOp>(op)) {
    auto axes = getConstantInts(s.getAxes());
    if (!axes) return {value, d};
    for (int64_t a : *axes)
      if (normalizeAxis(a, rank) == d) {
        // A slice that keeps a whole dimension (start 0, end ≥ INT_MAX/2) preserves it.
        auto starts = getConstantInts(s.getStarts()), ends = getConstantInts(s.getEnds());
        auto steps = getConstantInts(s.getSteps());
        size_t i = llvm::find(*axes, a) - axes->begin();
        if (starts && ends && steps && (*starts)[i] == 0 && (*steps)[i] == 1 &&
            (*ends)[i] >= (int64_t(1) << 31))
          return canonicalDimImpl(s.getInput(), d, memo);
        return {value, d};
      }
    return canonicalDimImpl(s.getInput(), d, memo);
  }
  if (auto p = dyn_cast<PositionsOp>(op)) return canonicalDimImpl(p.getReference(), p.getAxis(), memo);
  if (isa<ReduceMeanOp, ReduceSumOp, ReduceMaxOp, ReduceMinOp>(op)) {
    bool keep = op->getAttrOfType<BoolAttr>("keepdims").getValue();
    auto axes = op->getAttrOfType<DenseI64ArrayAttr>("axes").asArrayRef();
    if (keep && !llvm::is_contained(axes, d)) return canonicalDimImpl(op->getOperand(0), d, memo);
    return {value, d};
  }
  if (auto s = dyn_cast<SplitOp>(op))
    return d == s.getAxis() ? DimRef{value, d} : canonicalDimImpl(s.getInput(), d, memo);
  if (auto f = dyn_cast<FillOp>(op)) {
    if (auto sym = symbolicValueImpl(f.getShape(), memo))
      if (d < int64_t(sym->size()) && (*sym)[d].isDim()) return (*sym)[d].dim;
    return {value, d};
  }
  return {value, d};
}

std::optional<SmallVector<SymbolicElement>> symbolicValueUncached(Value value, ShapeMemo &memo) {
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!type || type.getRank() > 1 || !type.getElementType().isInteger()) return std::nullopt;
  if (auto ints = getConstantInts(value)) {
    SmallVector<SymbolicElement> out;
    for (int64_t v : *ints) out.push_back({v, {}});
    return out;
  }
  Operation *op = value.getDefiningOp();
  if (!op) return std::nullopt;
  if (auto s = dyn_cast<ShapeOfOp>(op)) {
    SmallVector<SymbolicElement> out;
    for (int64_t i = 0; i < rankOf(s.getInput()); ++i) {
      int64_t d = dimOf(s.getInput(), i);
      if (d != kDynamic) out.push_back({d, {}});
      else out.push_back({std::nullopt, canonicalDimImpl(s.getInput(), i, memo)});
    }
    return out;
  }
  if (isa<IdentityOp, CastOp, ReshapeOp, UnsqueezeOp, SqueezeOp>(op)) {
    auto in = symbolicValueImpl(op->getOperand(0), memo);
    if (in && int64_t(in->size()) == (type.getRank() == 0 ? 1 : type.getDimSize(0))) return in;
    return std::nullopt;
  }
  if (auto g = dyn_cast<GatherOp>(op)) {
    auto in = symbolicValueImpl(g.getInput(), memo);
    auto idx = getConstantInts(g.getIndices());
    if (!in || !idx) return std::nullopt;
    SmallVector<SymbolicElement> out;
    for (int64_t i : *idx) {
      if (i < 0) i += in->size();
      if (i < 0 || i >= int64_t(in->size())) return std::nullopt;
      out.push_back((*in)[i]);
    }
    return out;
  }
  if (auto s = dyn_cast<SliceOp>(op)) {
    auto in = symbolicValueImpl(s.getInput(), memo);
    auto starts = getConstantInts(s.getStarts()), ends = getConstantInts(s.getEnds());
    auto steps = getConstantInts(s.getSteps());
    if (!in || !starts || !ends || !steps || starts->size() != 1 || (*steps)[0] == 0) return std::nullopt;
    int64_t n = in->size(), start = (*starts)[0], end = (*ends)[0], step = (*steps)[0];
    if (start < 0) start += n;
    if (end < 0) end += n;
    SmallVector<SymbolicElement> out;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, n);
      end = std::clamp<int64_t>(end, 0, n);
      for (int64_t i = start; i < end; i += step) out.push_back((*in)[i]);
    } else {
      start = std::clamp<int64_t>(start, 0, n - 1);
      end = std::clamp<int64_t>(end, -1, n - 1);
      for (int64_t i = start; i > end; i += step) out.push_back((*in)[i]);
    }
    return out;
  }
  if (auto c = dyn_cast<ConcatOp>(op)) {
    SmallVector<SymbolicElement> out;
    for (Value v : c.getInputs()) {
      auto in = symbolicValueImpl(v, memo);
      if (!in) return std::nullopt;
      out.append(*in);
    }
    return out;
  }
  // Exporters turn expand(..., -1) into where(shape == -1, 1, shape): a
  // dimension is never -1, so the comparison is known.
  if (auto eq = dyn_cast<EqualOp>(op)) {
    auto a = symbolicValueImpl(eq.getLhs(), memo), b = symbolicValueImpl(eq.getRhs(), memo);
    if (!a || !b || a->size() != b->size()) return std::nullopt;
    SmallVector<SymbolicElement> out;
    for (size_t i = 0; i < a->size(); ++i) {
      const SymbolicElement &x = (*a)[i], &y = (*b)[i];
      SymbolicElement r;
      if (x.isConstant() && y.isConstant()) r.constant = *x.constant == *y.constant;
      else if ((x.isDim() && y.isConstant() && *y.constant < 0) || (y.isDim() && x.isConstant() && *x.constant < 0))
        r.constant = 0;
      else if (x.isDim() && y.isDim() && x.dim == y.dim) r.constant = 1;
      out.push_back(r);
    }
    return out;
  }
  if (auto where = dyn_cast<WhereOp>(op)) {
    auto c = symbolicValueImpl(where.getCondition(), memo);
    auto a = symbolicValueImpl(where.getLhs(), memo), b = symbolicValueImpl(where.getRhs(), memo);
    if (!c || !a || !b) return std::nullopt;
    size_t n = std::max({c->size(), a->size(), b->size()});
    auto at = [](const SmallVector<SymbolicElement> &v, size_t i) { return v[v.size() == 1 ? 0 : i]; };
    SmallVector<SymbolicElement> out;
    for (size_t i = 0; i < n; ++i) {
      SymbolicElement cond = at(*c, i);
      if (!cond.isConstant()) return std::nullopt;
      out.push_back(*cond.constant ? at(*a, i) : at(*b, i));
    }
    return out;
  }
  if (isa<AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp>(op)) {
    auto a = symbolicValueImpl(op->getOperand(0), memo), b = symbolicValueImpl(op->getOperand(1), memo);
    if (!a || !b) return std::nullopt;
    size_t n = std::max(a->size(), b->size());
    if ((a->size() != n && a->size() != 1) || (b->size() != n && b->size() != 1)) return std::nullopt;
    SmallVector<SymbolicElement> out;
    for (size_t i = 0; i < n; ++i) {
      const SymbolicElement &x = (*a)[a->size() == 1 ? 0 : i], &y = (*b)[b->size() == 1 ? 0 : i];
      SymbolicElement r;
      if (isa<SubOp>(op) && x.isDim() && y.isDim() && x.dim == y.dim) {
        r.constant = 0; // k_len - q_len with the same dimension on both sides
      } else if (x.isConstant() && y.isConstant()) {
        int64_t p = *x.constant, q = *y.constant;
        if (isa<AddOp>(op)) r.constant = p + q;
        else if (isa<SubOp>(op)) r.constant = p - q;
        else if (isa<MulOp>(op)) r.constant = p * q;
        else if (isa<DivOp>(op)) { if (q == 0) return std::nullopt; r.constant = p / q; }
        else if (isa<MaxOp>(op)) r.constant = std::max(p, q);
        else r.constant = std::min(p, q);
      } else if ((isa<AddOp, SubOp>(op) && y.isConstant() && *y.constant == 0) ||
                 ((isa<MulOp, DivOp>(op)) && y.isConstant() && *y.constant == 1)) {
        r = x;
      } else if ((isa<AddOp>(op) && x.isConstant() && *x.constant == 0) ||
                 (isa<MulOp>(op) && x.isConstant() && *x.constant == 1)) {
        r = y;
      }
      out.push_back(r);
    }
    return out;
  }
  return std::nullopt;
}

} // namespace

DimRef canonicalDim(Value value, int64_t dim) {
  ShapeMemo memo;
  return canonicalDimImpl(value, dim, memo);
}

std::optional<SmallVector<SymbolicElement>> symbolicValue(Value value) {
  ShapeMemo memo;
  return symbolicValueImpl(value, memo);
}

void refineTypes(func::FuncOp func) {
  func.walk([](Operation *op) {
    auto infer = dyn_cast<InferTypeOpInterface>(op);
    if (!infer || !isa<LatheDialect>(op->getDialect())) return;
    SmallVector<Type> inferred;
    if (failed(infer.inferReturnTypes(op->getContext(), std::nullopt, op->getOperands(),
                                      op->getRawDictionaryAttrs(), op->getPropertiesStorage(),
                                      op->getRegions(), inferred)))
      return;
    // Targets computed from shapes: their constant entries are known sizes
    // even while the rest of the target is symbolic.
    if (isa<ReshapeOp, ExpandOp, FillOp>(op) && inferred.size() == 1) {
      auto t = cast<RankedTensorType>(inferred[0]);
      Value target = isa<FillOp>(op) ? op->getOperand(0) : op->getOperand(1);
      auto sym = symbolicValue(target);
      if (sym && !getConstantInts(target) && int64_t(sym->size()) <= t.getRank()) {
        SmallVector<int64_t> shape(t.getShape());
        int64_t offset = t.getRank() - sym->size();
        for (auto [i, e] : llvm::enumerate(*sym)) {
          bool usable = e.isConstant() && (isa<ExpandOp>(op) ? *e.constant > 1 : *e.constant > 0);
          if (usable && shape[offset + i] == kDynamic) shape[offset + i] = *e.constant;
        }
        inferred[0] = RankedTensorType::get(shape, t.getElementType());
      }
    }
    for (auto [result, type] : llvm::zip(op->getResults(), inferred)) {
      auto now = dyn_cast<RankedTensorType>(result.getType());
      auto better = dyn_cast<RankedTensorType>(type);
      if (!now || !better || now == better || now.getRank() != better.getRank() ||
          now.getElementType() != better.getElementType())
        continue;
      SmallVector<int64_t> shape(now.getShape());
      bool changed = false;
      for (int64_t i = 0; i < now.getRank(); ++i)
        if (shape[i] == kDynamic && better.getDimSize(i) != kDynamic) {
          shape[i] = better.getDimSize(i);
          changed = true;
        }
      if (changed) result.setType(RankedTensorType::get(shape, now.getElementType()));
    }
  });
  if (func.getBody().empty()) return;
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  func.setType(FunctionType::get(func.getContext(), func.getArgumentTypes(), ret.getOperandTypes()));
}

LogicalResult foldAndClean(func::FuncOp func) {
  RewritePatternSet none(func.getContext());
  GreedyRewriteConfig config;
  config.maxIterations = 20;
  (void)applyPatternsAndFoldGreedily(func, std::move(none), config);
  return success();
}

Value makeI64Constant(OpBuilder &b, Location loc, ArrayRef<int64_t> values) {
  auto type = RankedTensorType::get({int64_t(values.size())}, b.getI64Type());
  return b.create<ConstantOp>(loc, DenseElementsAttr::get(type, values));
}

std::optional<ElementsAttr> transposeWeight(ElementsAttr weight, StringRef blobName) {
  auto type = dyn_cast<RankedTensorType>(weight.getType());
  if (!type || type.getRank() != 2 || !type.hasStaticShape()) return std::nullopt;
  int64_t rows = type.getDimSize(0), cols = type.getDimSize(1);
  auto outType = RankedTensorType::get({cols, rows}, type.getElementType());
  Type et = type.getElementType();
  if (!et.isIntOrFloat() || et.getIntOrFloatBitWidth() % 8) return std::nullopt;
  size_t width = et.getIntOrFloatBitWidth() / 8;
  ArrayRef<char> src;
  std::vector<char> denseBytes;
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(weight)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob) return std::nullopt;
    src = blob->getData();
  } else if (auto dense = dyn_cast<DenseElementsAttr>(weight)) {
    if (dense.isSplat()) return ElementsAttr(dense.reshape(outType));
    src = dense.getRawData();
  } else {
    return std::nullopt;
  }
  if (src.size() != size_t(rows * cols) * width) return std::nullopt;
  std::vector<char> out(src.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      std::memcpy(&out[(c * rows + r) * width], &src[(r * cols + c) * width], width);
  return makeResourceAttr(outType, blobName, out);
}

} // namespace lathe::passes
