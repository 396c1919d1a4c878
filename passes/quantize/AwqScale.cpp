// lathe-awq-scale: AWQ's per-input-channel scales (see passes/quantize/Awq.h),
// and lathe-smooth-quant: SmoothQuant's, folded so that the function computes
// the same values:
//   y = (x / s) · (W·diag(s))ᵀ
// where x / s comes from the producer of x with its own constants divided by s:
//   rms_norm / layer_norm  → scale (and bias) / s
//   linear                 → rows (and bias) / s
//   mul(silu(g), linear u) → u's rows / s                 (SwiGLU down projection)
//   reshape(transpose(attention(…, v = transpose(reshape(linear)))))
//                          → the value projection's rows / s, when heads are not grouped
// Layers sharing an input share one s. The calibration statistics of the layers
// are rewritten for the scaled input (absmax/s, mean_abs/s, S⁻¹·XᵀX·S⁻¹), so a
// later GPTQ or clipping search sees what the layer will really read.
#include "passes/Passes.h"
#include "passes/quantize/Awq.h"
#include "passes/quantize/QuantizeUtils.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_AWQSCALE
#define GEN_PASS_DEF_SMOOTHQUANT
#include "passes/Passes.h.inc"

namespace {

/// Where 1/s goes: a constant operand of `op` divided along `axis` (rows of a
/// [out, in] weight: axis 0; a 1-D scale or bias: axis 0).
struct FoldTarget {
  Operation *op = nullptr;
  SmallVector<unsigned> operands; // operand indices of constants to divide (weight/scale, bias)
  std::string what;               // for remarks
};

bool singleUse(Value v) { return v.hasOneUse(); }

bool isPerm0213(Value v, Value &inner) {
  auto t = v.getDefiningOp<TransposeOp>();
  if (!t || t.getPerm() != ArrayRef<int64_t>{0, 2, 1, 3} || !singleUse(t.getResult())) return false;
  inner = t.getInput();
  return true;
}

bool constantF32(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  return c && cast<RankedTensorType>(c.getType()).getElementType().isF32();
}

/// A linear whose constant rows (and bias) can absorb 1/s, with `result` read only once.
std::optional<FoldTarget> linearRows(Value result, const char *what) {
  auto linear = result.getDefiningOp<LinearOp>();
  if (!linear || !singleUse(result) || !constantF32(linear.getWeight())) return std::nullopt;
  FoldTarget t{linear, {1}, what};
  if (linear.getBias()) {
    if (!constantF32(linear.getBias())) return std::nullopt;
    t.operands.push_back(2);
  }
  return t;
}

std::optional<FoldTarget> findFoldTarget(Value input, std::string &why) {
  Operation *producer = input.getDefiningOp();
  if (!producer) {
    why = "the input is a function argument";
    return std::nullopt;
  }
  if (auto norm = dyn_cast<RmsNormOp>(producer)) {
    if (constantF32(norm.getScale())) return FoldTarget{norm, {1}, "rms_norm"};
  } else if (auto norm = dyn_cast<LayerNormOp>(producer)) {
    if (constantF32(norm.getScale()) && (!norm.getBias() || constantF32(norm.getBias()))) {
      FoldTarget t{norm, {1}, "layer_norm"};
      if (norm.getBias()) t.operands.push_back(2);
      return t;
    }
  } else if (isa<LinearOp>(producer)) {
    if (auto t = linearRows(input, "linear")) return t;
  } else if (auto mul = dyn_cast<MulOp>(producer)) {
    // SwiGLU: one factor is a linear (the up projection), the other an activation of another linear.
    if (mul.getLhs().getType() == mul.getRhs().getType() && mul.getLhs().getType() == input.getType())
      for (Value factor : {mul.getRhs(), mul.getLhs()})
        if (auto t = linearRows(factor, "linear (through a mul)")) return t;
  } else if (auto reshape = dyn_cast<ReshapeOp>(producer)) {
    Value heads;
    if (isPerm0213(reshape.getInput(), heads))
      if (auto attention = heads.getDefiningOp<AttentionOp>()) {
        if (attention.getNumHeads() != attention.getNumKvHeads()) {
          why = "the input is attention output with grouped KV heads (" + std::to_string(attention.getNumHeads()) + " query, " +
                std::to_string(attention.getNumKvHeads()) + " KV heads), so one value channel feeds several input channels";
          return std::nullopt;
        }
        Value split;
        if (singleUse(attention.getResult()) && isPerm0213(attention.getValue(), split))
          if (auto valueReshape = split.getDefiningOp<ReshapeOp>(); valueReshape && singleUse(valueReshape.getResult()))
            if (auto t = linearRows(valueReshape.getInput(), "value projection (through attention)")) return t;
      }
  }
  why = "its producer '" + producer->getName().getStringRef().str() + "' cannot absorb the scales";
  return std::nullopt;
}

/// Applies per-input-channel scales s to layers reading `input`: 1/s into the
/// target's constants (or, without a target, an inserted mul by 1/s after the
/// input's producer), s into the weights' columns, and the layers' calibration
/// statistics rewritten for the scaled input (absmax/s, mean_abs/s,
/// S⁻¹·XᵀX·S⁻¹; the |x| histogram cannot be rescaled per channel, so it is
/// dropped). Returns what absorbed 1/s, for the layers' record.
FailureOr<std::string> applyScales(Value input, ArrayRef<LinearOp> layers, std::vector<std::vector<float>> &weights,
                                   const std::vector<float> &s, const std::optional<FoldTarget> &target,
                                   const std::string &why, StringRef tag) {
  MLIRContext *context = input.getContext();
  OpBuilder b(context);
  const int64_t in = int64_t(s.size());
  std::string foldedInto;
  if (!target) {
    auto inputType = cast<RankedTensorType>(input.getType());
    if (inputType.getRank() < 1 || inputType.getDimSize(inputType.getRank() - 1) != in)
      return LinearOp(layers.front()).emitError("channel scales: the input ") << inputType << " does not end in " << in << " channels";
    std::vector<float> inverse(static_cast<size_t>(in), 0.f);
    for (int64_t i = 0; i < in; ++i) inverse[size_t(i)] = 1.f / s[size_t(i)];
    auto type = RankedTensorType::get({in}, b.getF32Type());
    b.setInsertionPointAfter(input.getDefiningOp());
    Location loc = LinearOp(layers.front()).getLoc();
    auto constant = b.create<ConstantOp>(loc, type, quantize::f32Resource(type, quantize::opName(LinearOp(layers.front())) + "." + tag.str() + "_inverse", inverse));
    auto mul = b.create<MulOp>(loc, input.getType(), input, constant.getResult());
    for (LinearOp l : layers) l->setOperand(0, mul.getResult());
    foldedInto = "mul (inserted: " + why + ")";
  } else {
    foldedInto = target->what;
  }
  // Fold 1/s into the producer's constants (new constants: the old ones may be shared).
  for (unsigned index : target ? target->operands : SmallVector<unsigned>{}) {
    Value operand = target->op->getOperand(index);
    auto constant = operand.getDefiningOp<ConstantOp>();
    auto type = cast<RankedTensorType>(constant.getType());
    std::vector<float> values = *quantize::readF32(constant.getValue());
    const int64_t rows = type.getDimSize(0), width = type.getRank() == 2 ? type.getDimSize(1) : 1;
    if (rows != in) return target->op->emitError("channel scales: the ") << target->what << " has " << rows << " channels, expected " << in;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c) values[size_t(r * width + c)] /= s[size_t(r)];
    b.setInsertionPoint(constant);
    auto replacement = b.create<ConstantOp>(constant.getLoc(), type,
                                            quantize::f32Resource(type, quantize::opName(target->op) + "." + tag.str(), values));
    target->op->setOperand(index, replacement);
    if (constant->use_empty()) constant->erase();
  }
  // s into the weights' columns, and the statistics of the scaled input.
  LinearOp first = layers.front();
  NamedAttrList stats(first->getAttrOfType<DictionaryAttr>("lathe.calibration"));
  std::string base = quantize::opName(first);
  auto vectorType = RankedTensorType::get({in}, b.getF32Type());
  for (const char *key : {"absmax", "mean_abs"})
    if (auto v = quantize::calibrationArray(first, key, in)) {
      for (int64_t i = 0; i < in; ++i) (*v)[size_t(i)] /= s[size_t(i)];
      stats.set(key, quantize::f32Resource(vectorType, base + "." + key + "." + tag.str(), *v));
    }
  if (auto gram = quantize::calibrationArray(first, "xtx", in * in)) {
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) (*gram)[size_t(i * in + j)] /= s[size_t(i)] * s[size_t(j)];
    stats.set("xtx", quantize::f32Resource(RankedTensorType::get({in, in}, b.getF32Type()), base + ".xtx." + tag.str(), *gram));
  }
  stats.erase("abs_hist");
  DictionaryAttr rewritten = stats.getDictionary(context);
  for (size_t l = 0; l < layers.size(); ++l) {
    LinearOp layer = layers[l];
    auto constant = layer.getWeight().getDefiningOp<ConstantOp>();
    auto type = cast<RankedTensorType>(constant.getType());
    std::vector<float> &w = weights[l];
    const int64_t out = type.getDimSize(0);
    for (int64_t r = 0; r < out; ++r)
      for (int64_t i = 0; i < in; ++i) w[size_t(r * in + i)] *= s[size_t(i)];
    b.setInsertionPoint(constant);
    auto scaled = b.create<ConstantOp>(constant.getLoc(), type, quantize::f32Resource(type, quantize::opName(layer) + "." + tag.str(), w));
    layer->setOperand(1, scaled);
    if (constant->use_empty()) constant->erase();
    if (layer->hasAttr("lathe.calibration")) layer->setAttr("lathe.calibration", rewritten);
  }
  return foldedInto;
}

/// The lathe.linear layers with a constant static f32 weight whose node name
/// matches `include` (all when empty) and no `exclude` pattern, grouped by their input.
llvm::MapVector<Value, SmallVector<LinearOp>> layersByInput(func::FuncOp fn, ArrayRef<std::string> include,
                                                             ArrayRef<std::string> exclude) {
  llvm::MapVector<Value, SmallVector<LinearOp>> groups;
  fn.walk([&](LinearOp op) {
    std::string name = quantize::opName(op);
    if (quantize::matchesAny(name, include, true) && !quantize::matchesAny(name, exclude, false) &&
        constantF32(op.getWeight()) && cast<RankedTensorType>(op.getWeight().getType()).hasStaticShape())
      groups[op.getInput()].push_back(op);
  });
  return groups;
}

/// Whether every reader of `input` is one of `layers` (else scaling x would change another op); the remark names it.
bool onlyReadBy(Value input, ArrayRef<LinearOp> layers, StringRef what, const std::string &names) {
  for (Operation *user : input.getUsers())
    if (!llvm::is_contained(layers, dyn_cast<LinearOp>(user))) {
      LinearOp(layers.front()).emitRemark(what) << " not applied to " << names << ": their input is also read by '"
                                      << user->getName().getStringRef() << "'";
      return false;
    }
  return true;
}

std::string namesOf(ArrayRef<LinearOp> layers) {
  std::string s;
  for (LinearOp l : layers) s += (s.empty() ? "" : ", ") + quantize::opName(l);
  return s;
}

struct AwqScalePass : impl::AwqScaleBase<AwqScalePass> {
  using AwqScaleBase::AwqScaleBase;

  void runOnOperation() override {
    if (format != "int8" && format != "int4" && format != "int3") {
      getOperation().emitError("lathe-awq-scale: format must be int8, int4 or int3, not '") << format << "'";
      return signalPassFailure();
    }
    if (unfoldable != "mul" && unfoldable != "skip") {
      getOperation().emitError("lathe-awq-scale: unfoldable must be mul or skip, not '") << unfoldable << "'";
      return signalPassFailure();
    }
    if (grid < 1) {
      getOperation().emitError("lathe-awq-scale: grid must be positive");
      return signalPassFailure();
    }
    auto groups = layersByInput(getOperation(), include, exclude);
    for (auto &[input, layers] : groups)
      if (failed(scaleGroup(input, layers))) return signalPassFailure();
  }

  LogicalResult scaleGroup(Value input, SmallVector<LinearOp> &layers) {
    const int64_t in = cast<RankedTensorType>(layers.front().getWeight().getType()).getDimSize(1);
    auto names = [&] { return namesOf(layers); };
    if (!onlyReadBy(input, layers, "AWQ scales", names())) return success();
    auto meanAbs = quantize::calibrationArray(layers.front(), "mean_abs", in);
    auto gram = quantize::calibrationArray(layers.front(), "xtx", in * in);
    if (!meanAbs || !gram) {
      if (onlyCalibrated) return success();
      return layers.front().emitError("AWQ needs the calibration statistics of this layer's input (mean |x| and XᵀX of ")
             << in << " channels): compile with --calibration";
    }
    std::string why;
    std::optional<FoldTarget> target = findFoldTarget(input, why);
    // No op absorbs 1/s: an explicit mul by 1/s before the layers, when asked and the input has a producer.
    const bool insertMul = !target && unfoldable == "mul" && input.getDefiningOp();
    if (!target && !insertMul) {
      layers.front().emitRemark("AWQ scales not applied to ") << names() << ": " << why
                                                              << " (clipping still applies)";
      return success();
    }
    // The search.
    std::vector<std::vector<float>> weights;
    std::vector<quantize::AwqLayer> members;
    for (LinearOp l : layers) {
      weights.push_back(*quantize::readF32(l.getWeight().getDefiningOp<ConstantOp>().getValue()));
      members.push_back({weights.back().data(), cast<RankedTensorType>(l.getWeight().getType()).getDimSize(0)});
    }
    const int64_t group = groupSize > 0 ? groupSize : in;
    if ((format != "int8") && (group % 32 || in % 32)) {
      layers.front().emitRemark("AWQ scales not applied to ") << names() << ": " << format
                                                              << " needs input features and group size in multiples of 32";
      return success();
    }
    quantize::AwqOptions options;
    options.scaleGrid = grid;
    quantize::AwqScales found = quantize::searchScales({format, group, format == "int8" || bool(symmetric)}, members, in,
                                                       meanAbs->data(), gram->data(), options);
    auto foldedInto = applyScales(input, layers, weights, found.scales, target, why, "awq");
    if (failed(foldedInto)) return failure();
    if (insertMul)
      layers.front().emitRemark("AWQ scales of ") << names() << " applied through an inserted mul by 1/s: " << why;
    OpBuilder b(&getContext());
    for (LinearOp layer : layers)
      layer->setAttr("lathe.awq", b.getDictionaryAttr({b.getNamedAttr("alpha", b.getF64FloatAttr(found.alpha)),
                                                       b.getNamedAttr("duo", b.getBoolAttr(found.duo)),
                                                       b.getNamedAttr("loss_rtn", b.getF64FloatAttr(found.rtnLoss)),
                                                       b.getNamedAttr("loss", b.getF64FloatAttr(found.loss)),
                                                       b.getNamedAttr("folded_into", b.getStringAttr(*foldedInto))}));
    return success();
  }
};

/// SmoothQuant (Xiao et al. 2023): s_i = max|x_i|^α / max|w_·i|^(1−α) over the
/// layers sharing the input, so activation outliers move into the weights and
/// both quantize well to int8. Only where the producer absorbs 1/s: the point
/// is that nothing is added at run time.
struct SmoothQuantPass : impl::SmoothQuantBase<SmoothQuantPass> {
  using SmoothQuantBase::SmoothQuantBase;

  void runOnOperation() override {
    if (!(alpha >= 0 && alpha <= 1)) {
      getOperation().emitError("lathe-smooth-quant: alpha must be in [0, 1], got ") << alpha.getValue();
      return signalPassFailure();
    }
    auto groups = layersByInput(getOperation(), include, exclude);
    for (auto &[input, layers] : groups)
      if (failed(smoothGroup(input, layers))) return signalPassFailure();
  }

  LogicalResult smoothGroup(Value input, SmallVector<LinearOp> &layers) {
    const int64_t in = cast<RankedTensorType>(layers.front().getWeight().getType()).getDimSize(1);
    const std::string names = namesOf(layers);
    if (!onlyReadBy(input, layers, "SmoothQuant", names)) return success();
    auto absmax = quantize::calibrationArray(layers.front(), "absmax", in);
    if (!absmax) {
      if (onlyCalibrated) return success();
      return layers.front().emitError("SmoothQuant needs the calibration statistics of this layer's input (max |x| of ")
             << in << " channels): compile with --calibration";
    }
    std::string why;
    std::optional<FoldTarget> target = findFoldTarget(input, why);
    if (!target) {
      layers.front().emitRemark("SmoothQuant not applied to ") << names << ": " << why << " (nothing is added at run time)";
      return success();
    }
    std::vector<std::vector<float>> weights;
    std::vector<double> wmax(size_t(in), 0.0);
    for (LinearOp l : layers) {
      weights.push_back(*quantize::readF32(l.getWeight().getDefiningOp<ConstantOp>().getValue()));
      const int64_t out = cast<RankedTensorType>(l.getWeight().getType()).getDimSize(0);
      for (int64_t r = 0; r < out; ++r)
        for (int64_t i = 0; i < in; ++i) wmax[size_t(i)] = std::max(wmax[size_t(i)], double(std::fabs(weights.back()[size_t(r * in + i)])));
    }
    std::vector<float> s(size_t(in), 1.f);
    double largest = 0, smallest = HUGE_VAL;
    for (int64_t i = 0; i < in; ++i) {
      const double x = (*absmax)[size_t(i)], w = wmax[size_t(i)];
      if (x > 0 && w > 0) s[size_t(i)] = float(std::max(std::pow(x, double(alpha)) / std::pow(w, 1.0 - double(alpha)), 1e-5));
      largest = std::max(largest, double(s[size_t(i)]));
      smallest = std::min(smallest, double(s[size_t(i)]));
    }
    auto foldedInto = applyScales(input, layers, weights, s, target, why, "smoothquant");
    if (failed(foldedInto)) return failure();
    OpBuilder b(&getContext());
    for (LinearOp layer : layers)
      layer->setAttr("lathe.smoothquant", b.getDictionaryAttr({b.getNamedAttr("alpha", b.getF64FloatAttr(alpha)),
                                                              b.getNamedAttr("max_scale", b.getF64FloatAttr(largest)),
                                                              b.getNamedAttr("min_scale", b.getF64FloatAttr(smallest)),
                                                              b.getNamedAttr("folded_into", b.getStringAttr(*foldedInto))}));
    return success();
  }
};

} // namespace
} // namespace lathe::passes
