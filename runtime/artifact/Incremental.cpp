#include "runtime/artifact/Incremental.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace lathe::artifact {
namespace {

const std::set<std::string> kElementwise = {
    "identity", "sqrt", "erf", "tanh", "exp", "log", "cos", "sin", "relu", "sigmoid", "silu", "neg", "abs",
    "reciprocal", "not", "add", "sub", "mul", "div", "pow", "max", "min", "and", "or", "equal", "less",
    "less_equal", "greater", "greater_equal", "where", "cast", "gelu", "rotary"};
const std::set<std::string> kLayout = {"reshape", "squeeze", "unsqueeze", "transpose", "expand"};

struct Analysis {
  const ArtifactSpec &spec;
  IncrementalPlan plan;
  std::vector<int> seqAxis;            // per tensor: the axis with the sequence symbol, -1 none
  std::vector<char> seqLength;         // per tensor: an integer value computed from the sequence length
  std::vector<char> fromIds;           // per tensor: depends on the token ids (or anything but masks/constants)
  std::vector<const WeightSpec *> weightOf;

  explicit Analysis(const ArtifactSpec &s) : spec(s) {}

  std::string where(const KernelSpec &k) const { return "node '" + k.source + "' (" + k.op + ")"; }

  bool fail(const std::string &reason) {
    plan.ok = false;
    if (plan.reason.empty()) plan.reason = reason;
    return false;
  }

  int axisOf(const TensorSpec &t) {
    int found = -1;
    for (size_t d = 0; d < t.shape.size(); ++d)
      if (!t.shape[d].isStatic() && t.shape[d].symbol == plan.sequenceSymbol) {
        if (found >= 0) return -2;
        found = int(d);
      }
    return found;
  }

  /// Values of a small constant integer operand (slice axes), or empty.
  std::vector<int64_t> constantInts(int32_t t) {
    std::vector<int64_t> out;
    const WeightSpec *w = t >= 0 ? weightOf[size_t(t)] : nullptr;
    if (!w) return out;
    DType dt = spec.tensors[size_t(t)].dtype;
    size_t n = w->bytes / dtypeSize(dt);
    for (size_t i = 0; i < n; ++i) {
      if (dt == DType::I64) { int64_t v; std::memcpy(&v, static_cast<const char *>(w->data) + 8 * i, 8); out.push_back(v); }
      else if (dt == DType::I32) { int32_t v; std::memcpy(&v, static_cast<const char *>(w->data) + 4 * i, 4); out.push_back(v); }
    }
    return out;
  }

  static int64_t normalize(int64_t axis, size_t rank) { return axis < 0 ? axis + int64_t(rank) : axis; }

  bool classifyInputs() {
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const TensorSpec &t = spec.tensors[size_t(spec.inputs[i])];
      bool integer = t.dtype == DType::I64 || t.dtype == DType::I32;
      if (!integer || t.shape.size() != 2)
        return fail("input '" + t.name + "' is not an integer [batch, sequence] tensor (a decoder takes token ids)");
      switch (classifyInput(t.name)) {
      case InputRole::Ids:
        if (plan.idsInput >= 0)
          return fail("inputs '" + spec.tensors[size_t(spec.inputs[size_t(plan.idsInput)])].name + "' and '" + t.name +
                      "' both look like token ids");
        plan.idsInput = int32_t(i);
        break;
      case InputRole::Mask: plan.maskInputs.push_back(int32_t(i)); break;
      case InputRole::Positions: plan.positionInputs.push_back(int32_t(i)); break;
      case InputRole::Zeros: plan.zeroInputs.push_back(int32_t(i)); break;
      }
    }
    if (plan.idsInput < 0) return fail("the model has no token-ids input");
    const TensorSpec &ids = spec.tensors[size_t(spec.inputs[size_t(plan.idsInput)])];
    if (ids.shape[1].isStatic())
      return fail("input '" + ids.name + "' has a fixed sequence length (" + std::to_string(ids.shape[1].value) + ")");
    plan.sequenceSymbol = ids.shape[1].symbol;
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      int32_t t = spec.inputs[i];
      seqAxis[size_t(t)] = axisOf(spec.tensors[size_t(t)]);
      if (seqAxis[size_t(t)] != 1)
        return fail("input '" + spec.tensors[size_t(t)].name + "' does not share the token ids' sequence dimension");
      bool isMask = std::find(plan.maskInputs.begin(), plan.maskInputs.end(), int32_t(i)) != plan.maskInputs.end();
      fromIds[size_t(t)] = !isMask;
    }
    return true;
  }

  bool checkKernel(size_t index) {
    const KernelSpec &k = spec.kernels[index];
    auto in = [&](size_t i) { return i < k.inputs.size() ? k.inputs[i] : -1; };
    auto axisIn = [&](size_t i) { return in(i) >= 0 ? seqAxis[size_t(in(i))] : -1; };
    auto rankIn = [&](size_t i) { return in(i) >= 0 ? spec.tensors[size_t(in(i))].shape.size() : 0; };
    auto intAttr = [&](const char *name, int64_t fallback) {
      auto it = k.attrs.find(name);
      return it != k.attrs.end() && std::holds_alternative<int64_t>(it->second) ? std::get<int64_t>(it->second) : fallback;
    };
    auto intsAttr = [&](const char *name) {
      auto it = k.attrs.find(name);
      return it != k.attrs.end() && std::holds_alternative<std::vector<int64_t>>(it->second)
                 ? std::get<std::vector<int64_t>>(it->second)
                 : std::vector<int64_t>{};
    };

    bool anyFromIds = false, anySeqLength = false, anySeq = false;
    for (size_t i = 0; i < k.inputs.size(); ++i) {
      if (in(i) < 0) continue;
      anyFromIds |= fromIds[size_t(in(i))] != 0;
      anySeqLength |= seqLength[size_t(in(i))] != 0;
      anySeq |= axisIn(i) >= 0;
    }
    std::vector<int> outAxes;
    for (int32_t out : k.outputs) {
      int a = axisOf(spec.tensors[size_t(out)]);
      if (a == -2) return fail(where(k) + " makes a [sequence x sequence] tensor '" + spec.tensors[size_t(out)].name +
                               "' (a mask built in the graph rather than by causal attention)");
      outAxes.push_back(a);
      fromIds[size_t(out)] = anyFromIds || k.op == "positions";
    }

    if (k.op == "attention") {
      if (intAttr("causal", 0) == 0) return fail(where(k) + " is not causal: every position sees the whole sequence");
      for (size_t i = 0; i < 3; ++i)
        if (axisIn(i) != 2) return fail(where(k) + ": operand " + std::to_string(i) + " does not carry the sequence on axis 2");
      if (in(3) >= 0) {
        if (fromIds[size_t(in(3))])
          return fail(where(k) + ": its mask depends on more than the attention-mask inputs (a position-dependent mask)");
        if (axisIn(3) >= 0 && size_t(axisIn(3)) != rankIn(3) - 1)
          return fail(where(k) + ": its mask carries the sequence on a query axis");
      }
      plan.attentionKernels.push_back(int32_t(index));
      seqAxis[size_t(k.outputs[0])] = 2;
      return true;
    }
    if (k.op == "positions") {
      if (axisIn(0) < 0 || normalize(intAttr("axis", 0), rankIn(0)) != axisIn(0))
        return fail(where(k) + " counts along an axis that is not the sequence");
      plan.positionsKernels.push_back(int32_t(index));
      seqAxis[size_t(k.outputs[0])] = 0;
      return true;
    }
    if (k.op == "shape_of") {
      seqLength[size_t(k.outputs[0])] = anySeq || anySeqLength;
      fromIds[size_t(k.outputs[0])] = 0; // a shape, not data
      return true;
    }
    if (k.op == "range") {
      if (anySeqLength)
        return fail(where(k) + " counts up to the sequence length: positions must come from `positions` (not canonicalized)");
      return true;
    }

    // Results that are values computed from the sequence length (shape arithmetic).
    if (anySeqLength) {
      bool intOut = true;
      for (int32_t out : k.outputs) {
        DType t = spec.tensors[size_t(out)].dtype;
        intOut &= t == DType::I64 || t == DType::I32;
      }
      // Shape operands (reshape targets, slice bounds, expand shapes) are recomputed per step.
      static const std::map<std::string, std::set<size_t>> shapeOperands = {
          {"reshape", {1}}, {"slice", {1, 2, 3, 4}}, {"expand", {1}}, {"fill", {0}}};
      auto it = shapeOperands.find(k.op);
      for (size_t i = 0; i < k.inputs.size(); ++i) {
        if (in(i) < 0 || !seqLength[size_t(in(i))]) continue;
        bool shapeOperand = it != shapeOperands.end() && it->second.count(i);
        if (!shapeOperand && !intOut)
          return fail(where(k) + " uses the sequence length as data");
      }
      if (intOut && !anySeq)
        for (int32_t out : k.outputs) seqLength[size_t(out)] = 1;
    }
    for (size_t o = 0; o < k.outputs.size(); ++o) seqAxis[size_t(k.outputs[o])] = outAxes[o];
    if (!anySeq) {
      // Nothing here carries positions; a result that does would come from nowhere.
      for (size_t o = 0; o < outAxes.size(); ++o)
        if (outAxes[o] >= 0 && k.op != "fill" && k.op != "expand")
          return fail(where(k) + " makes a sequence-long tensor from no position-carrying operand");
      return true;
    }

    const int outAxis = outAxes.empty() ? -1 : outAxes[0];
    const size_t outRank = k.outputs.empty() ? 0 : spec.tensors[size_t(k.outputs[0])].shape.size();
    if (kElementwise.count(k.op)) {
      if (outAxis < 0) return fail(where(k) + " drops the sequence dimension");
      for (size_t i = 0; i < k.inputs.size(); ++i)
        if (axisIn(i) >= 0 && int64_t(axisIn(i)) + int64_t(outRank - rankIn(i)) != outAxis)
          return fail(where(k) + " broadcasts the sequence of operand " + std::to_string(i) + " against another axis");
      return true;
    }
    if (k.op == "linear" || k.op == "layer_norm" || k.op == "rms_norm") {
      if (axisIn(0) < 0 || size_t(axisIn(0)) == rankIn(0) - 1 || outAxis != axisIn(0))
        return fail(where(k) + " works along the sequence axis");
      for (size_t i = 1; i < k.inputs.size(); ++i)
        if (axisIn(i) >= 0) return fail(where(k) + ": its weight carries the sequence");
      return true;
    }
    if (k.op == "softmax" || k.op == "reduce_mean" || k.op == "reduce_sum" || k.op == "reduce_max" || k.op == "reduce_min") {
      std::vector<int64_t> axes = k.op == "softmax" ? std::vector<int64_t>{intAttr("axis", -1)} : intsAttr("axes");
      if (k.op != "softmax" && axes.empty()) return fail(where(k) + " reduces over every axis, the sequence included");
      for (int64_t a : axes)
        if (normalize(a, rankIn(0)) == axisIn(0)) return fail(where(k) + " works along the sequence axis");
      return true;
    }
    if (kLayout.count(k.op)) {
      if (axisIn(0) < 0) return true; // only a shape operand carries it: handled above
      if (outAxis < 0) return fail(where(k) + " merges the sequence dimension with another");
      return true;
    }
    if (k.op == "embedding") {
      if (axisIn(0) >= 0) return fail(where(k) + ": its table carries the sequence");
      if (outAxis != axisIn(1)) return fail(where(k) + " moves the sequence axis");
      return true;
    }
    if (k.op == "gather") {
      int64_t axis = normalize(intAttr("axis", 0), rankIn(0));
      if (axisIn(0) >= 0 && axis == axisIn(0)) return fail(where(k) + " gathers along the sequence axis");
      if (outAxis < 0) return fail(where(k) + " drops the sequence dimension");
      return true;
    }
    if (k.op == "concat" || k.op == "split") {
      int64_t axis = intAttr("axis", 0);
      for (size_t i = 0; i < k.inputs.size(); ++i)
        if (axisIn(i) >= 0 && normalize(axis, rankIn(i)) == axisIn(i))
          return fail(where(k) + " joins or splits along the sequence axis");
      if (outAxis < 0) return fail(where(k) + " drops the sequence dimension");
      return true;
    }
    if (k.op == "slice") {
      if (axisIn(0) < 0) return true;
      std::vector<int64_t> axes = constantInts(in(3));
      if (in(3) >= 0 && axes.empty()) return fail(where(k) + " slices along axes that are not constant");
      if (in(3) < 0) return fail(where(k) + " slices every axis, the sequence included");
      for (int64_t a : axes)
        if (normalize(a, rankIn(0)) == axisIn(0)) return fail(where(k) + " slices along the sequence axis");
      if (outAxis != axisIn(0)) return fail(where(k) + " moves the sequence axis");
      return true;
    }
    if (k.op == "matmul") {
      if (axisIn(1) >= 0 && size_t(axisIn(1)) + 2 == rankIn(1))
        return fail(where(k) + " multiplies over the sequence (attention not fused into lathe.attention?)");
      if (axisIn(0) >= 0 && size_t(axisIn(0)) + 1 == rankIn(0))
        return fail(where(k) + " multiplies over the sequence");
      if (outAxis < 0) return fail(where(k) + " drops the sequence dimension");
      return true;
    }
    return fail(where(k) + " is not known to be position-wise");
  }
};

} // namespace

InputRole classifyInput(const std::string &name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (lower.find("mask") != std::string::npos) return InputRole::Mask;
  if (lower.find("position") != std::string::npos) return InputRole::Positions;
  if (lower.find("type") != std::string::npos || lower.find("segment") != std::string::npos) return InputRole::Zeros;
  return InputRole::Ids;
}

IncrementalPlan analyzeIncremental(const ArtifactSpec &spec) {
  Analysis a(spec);
  a.plan.ok = true;
  const size_t n = spec.tensors.size();
  a.seqAxis.assign(n, -1);
  a.seqLength.assign(n, 0);
  a.fromIds.assign(n, 0);
  a.weightOf.assign(n, nullptr);
  for (const WeightSpec &w : spec.weights)
    if (w.tensor >= 0 && size_t(w.tensor) < n) a.weightOf[size_t(w.tensor)] = &w;
  if (!a.classifyInputs()) return a.plan;
  for (size_t k = 0; k < spec.kernels.size(); ++k)
    if (!a.checkKernel(k)) return a.plan;
  if (a.plan.attentionKernels.empty()) {
    a.fail("the model has no causal attention (nothing to cache)");
    return a.plan;
  }
  for (int32_t out : spec.outputs)
    if (a.seqAxis[size_t(out)] != 1) {
      a.fail("output '" + spec.tensors[size_t(out)].name + "' is not per position [batch, sequence, ...]");
      return a.plan;
    }
  return a.plan;
}

} // namespace lathe::artifact
