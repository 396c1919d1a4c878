// lathe-prune-structured: whole FFN channels and attention heads removed, with
// the graph's shapes rewritten, so the result is a smaller dense model (see
// Passes.td for the patterns and scores).
#include "passes/Passes.h"
#include "passes/quantize/QuantizeUtils.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_STRUCTUREDPRUNE
#include "passes/Passes.h.inc"

namespace {

bool singleUse(Value v) { return v.hasOneUse(); }

bool isActivation(Operation *op) { return isa<GeluOp, ReluOp, SiluOp, SigmoidOp, TanhOp>(op); }

/// A linear whose weight is a static f32 constant, or null.
LinearOp constantLinear(Value v) {
  auto l = v.getDefiningOp<LinearOp>();
  if (!l || !l.getWeight().getDefiningOp<ConstantOp>()) return {};
  auto t = cast<RankedTensorType>(l.getWeight().getType());
  return t.hasStaticShape() && t.getElementType().isF32() ? l : LinearOp();
}

std::vector<float> weightOf(LinearOp l) { return *quantize::readF32(l.getWeight().getDefiningOp<ConstantOp>().getValue()); }

std::vector<float> biasOf(LinearOp l) {
  if (!l.getBias()) return {};
  auto c = l.getBias().getDefiningOp<ConstantOp>();
  if (!c) return {};
  auto v = quantize::readF32(c.getValue());
  return v ? *v : std::vector<float>{};
}

/// Keeps rows (`rows`) or columns of a linear's weight and, for rows, of its bias.
LogicalResult keepSlices(LinearOp l, const std::vector<int64_t> &keep, bool rows, const std::string &suffix) {
  auto type = cast<RankedTensorType>(l.getWeight().getType());
  const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
  std::vector<float> w = weightOf(l), kept;
  const int64_t n = int64_t(keep.size());
  kept.reserve(size_t(rows ? n * in : out * n));
  if (rows)
    for (int64_t r : keep) kept.insert(kept.end(), w.begin() + r * in, w.begin() + (r + 1) * in);
  else
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c : keep) kept.push_back(w[size_t(r * in + c)]);
  OpBuilder b(l);
  const std::string base = quantize::opName(l);
  // The report's "before" is the layer as it came in.
  if (!l->hasAttr("lathe.structured_bytes_before")) l->setAttr("lathe.structured_bytes_before", b.getI64IntegerAttr(out * in * 4));
  auto nt = RankedTensorType::get(rows ? ArrayRef<int64_t>{n, in} : ArrayRef<int64_t>{out, n}, b.getF32Type());
  auto oldWeight = l.getWeight().getDefiningOp<ConstantOp>();
  l->setOperand(1, b.create<ConstantOp>(oldWeight.getLoc(), nt, quantize::f32Resource(nt, base + suffix, kept)).getResult());
  if (oldWeight->use_empty()) oldWeight->erase();
  if (rows && l.getBias()) {
    std::vector<float> bias = biasOf(l);
    if (bias.size() != size_t(out)) return l.emitError("structured pruning needs a constant bias");
    std::vector<float> kb;
    for (int64_t r : keep) kb.push_back(bias[size_t(r)]);
    auto bt = RankedTensorType::get({n}, b.getF32Type());
    auto oldBias = l.getBias().getDefiningOp<ConstantOp>();
    l->setOperand(2, b.create<ConstantOp>(oldBias.getLoc(), bt, quantize::f32Resource(bt, base + suffix + ".bias", kb)).getResult());
    if (oldBias->use_empty()) oldBias->erase();
  }
  // The layer's input statistics stay valid for row slices; a column slice keeps only its channels.
  if (!rows) {
    if (auto stats = l->getAttrOfType<DictionaryAttr>("lathe.calibration")) {
      NamedAttrList updated;
      for (NamedAttribute a : stats) {
        auto values = quantize::calibrationArray(l, a.getName().strref(), in);
        auto gram = quantize::calibrationArray(l, a.getName().strref(), in * in);
        if (values && a.getName() != "abs_hist") {
          std::vector<float> v;
          for (int64_t c : keep) v.push_back((*values)[size_t(c)]);
          auto t = RankedTensorType::get({n}, b.getF32Type());
          updated.append(a.getName(), quantize::f32Resource(t, base + suffix + "." + a.getName().str(), v));
        } else if (gram) {
          std::vector<float> g;
          for (int64_t r : keep)
            for (int64_t c : keep) g.push_back((*gram)[size_t(r * in + c)]);
          auto t = RankedTensorType::get({n, n}, b.getF32Type());
          updated.append(a.getName(), quantize::f32Resource(t, base + suffix + "." + a.getName().str(), g));
        } else {
          updated.append(a);
        }
      }
      l->setAttr("lathe.calibration", updated.getDictionary(l.getContext()));
    }
  }
  return success();
}

/// Re-infers the result types of `ops` (in program order).
LogicalResult reinfer(ArrayRef<Operation *> ops) {
  for (Operation *op : ops) {
    auto iface = dyn_cast<InferTypeOpInterface>(op);
    if (!iface) return op->emitError("structured pruning cannot re-infer the shape of this op");
    SmallVector<Type> types;
    if (failed(iface.inferReturnTypes(op->getContext(), op->getLoc(), op->getOperands(), op->getAttrDictionary(),
                                      op->getPropertiesStorage(), op->getRegions(), types)))
      return failure();
    for (auto [r, t] : llvm::zip(op->getResults(), types)) r.setType(t);
  }
  return success();
}

/// The ids of the `count` lowest scores (ties: lower id), sorted ascending.
std::vector<int64_t> lowest(const std::vector<double> &score, int64_t count) {
  std::vector<int64_t> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[size_t(a)] < score[size_t(b)]; });
  order.resize(size_t(std::min<int64_t>(count, int64_t(order.size()))));
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<int64_t> complement(const std::vector<int64_t> &removed, int64_t n) {
  std::set<int64_t> gone(removed.begin(), removed.end());
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i)
    if (!gone.count(i)) keep.push_back(i);
  return keep;
}

struct StructuredPrunePass : impl::StructuredPruneBase<StructuredPrunePass> {
  using StructuredPruneBase::StructuredPruneBase;
  int64_t layerIndex = 0;

  void runOnOperation() override {
    if (!(ffn >= 0 && ffn < 1) || !(heads >= 0 && heads < 1)) {
      getOperation().emitError("lathe-prune-structured: ffn and heads must be in [0, 1)");
      return signalPassFailure();
    }
    if (criterion != "importance" && criterion != "weight-norm" && criterion != "random") {
      getOperation().emitError("lathe-prune-structured: unknown criterion '") << criterion << "' (importance, weight-norm or random)";
      return signalPassFailure();
    }
    SmallVector<LinearOp> downs;
    getOperation().walk([&](LinearOp op) {
      if (!quantize::matchesAny(quantize::opName(op), exclude, false)) downs.push_back(op);
    });
    for (LinearOp down : downs) {
      if (ffn > 0 && failed(pruneFfn(down))) return signalPassFailure();
      if (heads > 0 && failed(pruneHeads(down))) return signalPassFailure();
    }
  }

  /// Scores of the input channels of `down` (the consumer), combined with the
  /// rows of `producer` for weight-norm.
  std::optional<std::vector<double>> channelScores(LinearOp down, LinearOp producer) {
    auto type = cast<RankedTensorType>(down.getWeight().getType());
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    std::vector<double> score(size_t(in), 0.0);
    const std::vector<float> w = weightOf(down);
    if (criterion == "random") {
      std::mt19937_64 rng(uint64_t(seed) * 1000003u + uint64_t(layerIndex));
      std::uniform_real_distribution<double> u(0, 1);
      for (double &s : score) s = u(rng);
      return score;
    }
    std::vector<double> column(size_t(in), 0.0);
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c = 0; c < in; ++c) column[size_t(c)] += double(w[size_t(r * in + c)]) * w[size_t(r * in + c)];
    if (criterion == "importance") {
      auto gram = quantize::calibrationArray(down, "xtx", in * in);
      if (!gram) {
        down.emitError("criterion importance needs this layer's calibration XᵀX (lathe.calibration xtx of ")
            << in << "x" << in << "): compile with --calibration";
        return std::nullopt;
      }
      for (int64_t c = 0; c < in; ++c) score[size_t(c)] = column[size_t(c)] * std::max(0.f, (*gram)[size_t(c * in + c)]);
    } else {
      const std::vector<float> p = weightOf(producer);
      const int64_t pin = cast<RankedTensorType>(producer.getWeight().getType()).getDimSize(1);
      for (int64_t c = 0; c < in; ++c) {
        double row = 0;
        for (int64_t k = 0; k < pin; ++k) row += double(p[size_t(c * pin + k)]) * p[size_t(c * pin + k)];
        score[size_t(c)] = std::sqrt(row * column[size_t(c)]);
      }
    }
    return score;
  }

  void record(LinearOp down, int64_t removed, int64_t kept, const char *what) {
    OpBuilder b(down);
    NamedAttrList info;
    if (auto old = down->getAttrOfType<DictionaryAttr>("lathe.structured")) info = NamedAttrList(old);
    info.set(std::string(what) + "_removed", b.getI64IntegerAttr(removed));
    info.set(std::string(what) + "_kept", b.getI64IntegerAttr(kept));
    info.set("criterion", b.getStringAttr(criterion));
    down->setAttr("lathe.structured", info.getDictionary(down.getContext()));
  }

  LogicalResult pruneFfn(LinearOp down) {
    if (!down.getWeight().getDefiningOp<ConstantOp>() || !singleUse(down.getInput())) return success();
    Operation *def = down.getInput().getDefiningOp();
    if (!def) return success();
    SmallVector<LinearOp> producers;
    SmallVector<Operation *> between; // ops to re-infer, in program order
    auto producerThrough = [&](Value v) -> bool {
      // v = act(linear(x)) or v = linear(x), every value used once.
      Operation *d = v.getDefiningOp();
      if (d && isActivation(d) && singleUse(d->getOperand(0)) && singleUse(v)) {
        if (LinearOp l = constantLinear(d->getOperand(0))) return producers.push_back(l), between.push_back(d), true;
        return false;
      }
      if (LinearOp l = constantLinear(v); l && singleUse(v)) return producers.push_back(l), true;
      return false;
    };
    if (isActivation(def)) {
      if (!producerThrough(down.getInput())) return success();
    } else if (isa<MulOp>(def)) {
      if (!producerThrough(def->getOperand(0)) || !producerThrough(def->getOperand(1))) return success();
      between.push_back(def);
    } else {
      return success();
    }
    if (producers.size() == 2 && between.size() == 1) return success(); // mul of two bare linears: not an FFN
    const int64_t channels = cast<RankedTensorType>(down.getWeight().getType()).getDimSize(1);
    for (LinearOp p : producers)
      if (cast<RankedTensorType>(p.getWeight().getType()).getDimSize(0) != channels) return success();
    // The activation-side producer for weight-norm: the one feeding the activation, else the first.
    ++layerIndex;
    auto score = channelScores(down, producers.front());
    if (!score) return failure();
    const int64_t remove = int64_t(std::floor(ffn * double(channels) / 32.0)) * 32;
    if (remove <= 0 || remove >= channels) return success();
    const std::vector<int64_t> keep = complement(lowest(*score, remove), channels);
    for (LinearOp p : producers)
      if (failed(keepSlices(p, keep, /*rows=*/true, ".ffn_kept"))) return failure();
    if (failed(keepSlices(down, keep, /*rows=*/false, ".ffn_kept"))) return failure();
    SmallVector<Operation *> ops;
    for (LinearOp p : producers) ops.push_back(p);
    std::sort(between.begin(), between.end(), [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
    ops.append(between.begin(), between.end());
    if (failed(reinfer(ops))) return failure();
    record(down, remove, channels - remove, "ffn");
    return success();
  }

  LogicalResult pruneHeads(LinearOp o) {
    // o ← reshape ← transpose ← attention
    auto merge = o.getInput().getDefiningOp<ReshapeOp>();
    auto back = merge ? merge.getInput().getDefiningOp<TransposeOp>() : TransposeOp();
    auto att = back ? back.getInput().getDefiningOp<AttentionOp>() : AttentionOp();
    if (!att || !o.getWeight().getDefiningOp<ConstantOp>()) return success();
    const int64_t H = att.getNumHeads(), KV = att.getNumKvHeads();
    auto qt = cast<RankedTensorType>(att.getQuery().getType());
    const int64_t D = qt.getDimSize(3);
    if (D == ShapedType::kDynamic || H % KV) return success();
    // Each of q, k, v: linear → reshape → transpose → (rotary: lathe.rotary or elementwise ops) → attention.
    auto projection = [&](Value v) -> LinearOp {
      Operation *d = v.getDefiningOp();
      for (int hops = 0; d && hops < 16; ++hops) {
        if (auto l = dyn_cast<LinearOp>(d)) return l;
        if (auto r = dyn_cast<ReshapeOp>(d)) d = r.getInput().getDefiningOp();
        else if (auto t = dyn_cast<TransposeOp>(d)) d = t.getInput().getDefiningOp();
        else if (isa<AddOp, MulOp, RotaryOp>(d)) d = d->getOperand(0).getDefiningOp();
        else return {};
      }
      return {};
    };
    LinearOp q = projection(att.getQuery()), k = projection(att.getKey()), v = projection(att.getValue());
    if (!q || !k || !v || !constantLinear(q.getResult()) || !constantLinear(k.getResult()) || !constantLinear(v.getResult()))
      return success();
    const int64_t group = H / KV;
    ++layerIndex;
    auto channel = channelScores(o, q);
    if (!channel) return failure();
    std::vector<double> headScore(size_t(H), 0.0);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) headScore[size_t(h)] += (*channel)[size_t(h * D + d)];
    std::vector<int64_t> keepHeads, keepKv;
    if (KV == H) {
      const int64_t remove = int64_t(std::floor(heads * double(H)));
      if (remove <= 0 || remove >= H) return success();
      keepHeads = complement(lowest(headScore, remove), H);
      keepKv = keepHeads;
    } else {
      // Grouped KV heads: the same number of query heads leaves every group.
      const int64_t remove = int64_t(std::floor(heads * double(group)));
      if (remove <= 0 || remove >= group) return success();
      for (int64_t g = 0; g < KV; ++g) {
        std::vector<double> s(headScore.begin() + g * group, headScore.begin() + (g + 1) * group);
        for (int64_t i : complement(lowest(s, remove), group)) keepHeads.push_back(g * group + i);
        keepKv.push_back(g);
      }
    }
    auto channelsOf = [&](const std::vector<int64_t> &hs) {
      std::vector<int64_t> c;
      for (int64_t h : hs)
        for (int64_t d = 0; d < D; ++d) c.push_back(h * D + d);
      return c;
    };
    // The ops between the projections and o, to re-infer after the surgery.
    std::set<Operation *> region;
    std::function<void(Operation *)> forward = [&](Operation *op) {
      for (Value r : op->getResults())
        for (Operation *user : r.getUsers())
          if (user != o.getOperation() && !region.count(user) && user->getBlock() == o->getBlock() && user->isBeforeInBlock(o)) {
            region.insert(user);
            forward(user);
          }
    };
    for (LinearOp l : {q, k, v}) forward(l);
    if (failed(keepSlices(q, channelsOf(keepHeads), true, ".heads_kept"))) return failure();
    if (KV == H) {
      if (failed(keepSlices(k, channelsOf(keepKv), true, ".heads_kept")) ||
          failed(keepSlices(v, channelsOf(keepKv), true, ".heads_kept")))
        return failure();
    }
    if (failed(keepSlices(o, channelsOf(keepHeads), false, ".heads_kept"))) return failure();
    OpBuilder b(att);
    att.setNumHeadsAttr(b.getI64IntegerAttr(int64_t(keepHeads.size())));
    att.setNumKvHeadsAttr(b.getI64IntegerAttr(int64_t(keepKv.size())));
    // Reshape targets that name a head count or a width get their own new constant.
    SmallVector<Operation *> ops{q, k, v};
    for (Operation *op : region) ops.push_back(op);
    std::sort(ops.begin(), ops.end(), [](Operation *a, Operation *c) { return a->isBeforeInBlock(c); });
    for (Operation *op : ops) {
      if (auto r = dyn_cast<ReshapeOp>(op)) {
        auto target = r.getShape().getDefiningOp<ConstantOp>();
        auto ints = ir::getConstantInts(r.getShape());
        if (!target || !ints) return r.emitError("structured head pruning needs constant reshape targets");
        std::vector<int64_t> dims(ints->begin(), ints->end());
        auto in = cast<RankedTensorType>(r.getInput().getType());
        bool changed = false;
        if (dims.size() == 4 && dims[2] > 0 && dims[3] > 0 && in.getRank() == 3 && !in.isDynamicDim(2))
          changed = true, dims[2] = in.getDimSize(2) / dims[3];
        else if (dims.size() == 3 && dims[2] > 0 && in.getRank() == 4 && !in.isDynamicDim(2) && !in.isDynamicDim(3))
          changed = true, dims[2] = in.getDimSize(2) * in.getDimSize(3);
        if (changed) {
          OpBuilder rb(r);
          auto t = RankedTensorType::get({int64_t(dims.size())}, rb.getI64Type());
          auto c = rb.create<ConstantOp>(target.getLoc(), t, DenseElementsAttr::get(t, ArrayRef<int64_t>(dims)));
          r->setOperand(1, c.getResult());
          if (target->use_empty()) target->erase();
        }
      }
      if (failed(reinfer(ArrayRef<Operation *>{op}))) return failure();
    }
    record(o, H - int64_t(keepHeads.size()), int64_t(keepHeads.size()), "heads");
    return success();
  }
};

} // namespace
} // namespace lathe::passes
