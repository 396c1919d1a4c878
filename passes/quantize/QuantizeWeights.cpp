// lathe-quantize-weights: round-to-nearest weight-only compression of
// lathe.linear layers whose weight is a constant, into lathe.quantized_linear.
//   int8: symmetric, one f16 scale per group (group 0 = per output channel):
//         d = max|w| / 127, q = clamp(round(w / d), -127, 127)
//   int4: ggml's rules, one f16 scale (and min) per group of 32/64/128:
//         symmetric  (Q4_0):  d = m / -8 where m is the value of largest
//                    magnitude, q = clamp(round(w / d) + 8, 0, 15), ŵ = d·(q − 8)
//         asymmetric (Q4_1):  d = (max − min) / 15, q = clamp(round((w − min) / d), 0, 15),
//                    ŵ = d·q + min
//   int3: 32-weight blocks of 12 bytes, symmetric d = m / -4, ŵ = d·(q − 4), or
//         asymmetric d = (max − min) / 7, ŵ = d·q + min; q in 0..7
//   bf16: round to nearest even.
//   fp16: IEEE half, round to nearest even; a layer with a weight beyond ±65504
//         (half's largest finite value) is refused, not saturated.
//   w8a8: int8 weights as int8 per output channel, and the input quantized to
//         int8 at run time: per token (dynamic) or with static scales from the
//         calibration statistics (per tensor: max |x| or a percentile of |x|;
//         per channel: max |x_i|, folded into the weight's columns).
// Scales and mins are rounded to f16 first and the codes computed against the
// rounded values, so the runtime's ŵ is exactly what the pass measured. Each
// new op carries lathe.compression = {method, bits_per_weight, bytes_before,
// bytes_after, weight_error} (weight_error = ‖W − Ŵ‖ / ‖W‖) for the report.
#include "passes/Passes.h"
#include "passes/quantize/Awq.h"
#include "passes/quantize/Gptq.h"
#include "passes/quantize/QuantizeUtils.h"
#include "passes/lowrank/LowRankMath.h"
#include "passes/prune/SparseRewrite.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_QUANTIZEWEIGHTS
#include "passes/Passes.h.inc"

namespace {

struct QuantizeWeightsPass : impl::QuantizeWeightsBase<QuantizeWeightsPass> {
  using QuantizeWeightsBase::QuantizeWeightsBase;

  void runOnOperation() override {
    if (format != "int8" && format != "int4" && format != "int3" && format != "bf16" && format != "fp16" && format != "w8a8") {
      getOperation().emitError("lathe-quantize-weights: unknown format '") << format << "' (int8, int4, int3, bf16, fp16 or w8a8)";
      return signalPassFailure();
    }
    if (format == "w8a8") {
      std::string bad;
      if (actMode != "dynamic" && actMode != "static") bad = "act-mode must be dynamic or static, not '" + actMode + "'";
      else if (actGranularity != "tensor" && actGranularity != "channel")
        bad = "act-granularity must be tensor or channel, not '" + actGranularity + "'";
      else if (actCalibration != "minmax" && actCalibration != "percentile")
        bad = "act-calibration must be minmax or percentile, not '" + actCalibration + "'";
      else if (!(actPercentile > 0 && actPercentile <= 100)) bad = "act-percentile must be in (0, 100]";
      else if (actGranularity == "channel" && actCalibration == "percentile")
        bad = "per-channel activation scales are min-max (the histogram is per tensor)";
      else if (method == "awq") bad = "w8a8 takes method rtn or gptq (SmoothQuant is the activation-aware step: lathe-smooth-quant)";
      else if (method == "gptq" && actMode == "static" && actGranularity == "channel")
        bad = "gptq with per-channel static activation scales is not supported (use per-tensor or dynamic scales)";
      if (!bad.empty()) {
        getOperation().emitError("lathe-quantize-weights: w8a8: ") << bad;
        return signalPassFailure();
      }
    }
    if (method != "rtn" && method != "gptq" && method != "awq") {
      getOperation().emitError("lathe-quantize-weights: unknown method '") << method << "' (rtn, gptq or awq)";
      return signalPassFailure();
    }
    if (blockSize < 1 || dampening < 0) {
      getOperation().emitError("lathe-quantize-weights: block-size must be positive and dampening non-negative");
      return signalPassFailure();
    }
    if (targets != "linear" && targets != "embedding") {
      getOperation().emitError("lathe-quantize-weights: unknown targets '") << targets << "' (linear or embedding)";
      return signalPassFailure();
    }
    auto selected = [&](Operation *op) {
      std::string name = quantize::opName(op);
      return quantize::matchesAny(name, include, /*emptyMatches=*/true) && !quantize::matchesAny(name, exclude, false);
    };
    if (targets == "embedding") {
      if (format != "int8") {
        getOperation().emitError("lathe-quantize-weights: embedding tables are quantized to int8 only, not ") << format;
        return signalPassFailure();
      }
      SmallVector<EmbeddingOp> tables;
      getOperation().walk([&](EmbeddingOp op) {
        if (selected(op)) tables.push_back(op);
      });
      for (EmbeddingOp op : tables)
        if (failed(rewriteEmbedding(op))) return signalPassFailure();
      return;
    }
    SmallVector<LinearOp> layers;
    getOperation().walk([&](LinearOp op) {
      if (selected(op)) layers.push_back(op);
    });
    for (LinearOp op : layers)
      if (failed(rewrite(op))) return signalPassFailure();
  }

  /// An int8 table (one f16 scale per row, or per group of the row): rows are
  /// looked up and dequantized, so the table costs a quarter of its f32 bytes.
  LogicalResult rewriteEmbedding(EmbeddingOp op) {
    auto tableOp = op.getTable().getDefiningOp<ConstantOp>();
    auto type = cast<RankedTensorType>(op.getTable().getType());
    if (!tableOp || !type.getElementType().isF32() || !type.hasStaticShape() || type.getRank() != 2) {
      op.emitRemark("not quantized: its table is not a constant f32 [rows, dim] tensor");
      return success();
    }
    auto values = quantize::readF32(tableOp.getValue());
    if (!values) return op.emitError("cannot read the table of this embedding");
    const int64_t rows = type.getDimSize(0), dim = type.getDimSize(1);
    const int64_t group = groupSize > 0 ? groupSize : dim;
    quantize::Quantized q = quantize::quantizeInt8(*values, rows, dim, group);
    OpBuilder b(op);
    std::string base = quantize::opName(op);
    auto qt = RankedTensorType::get({rows, dim}, IntegerType::get(&getContext(), 8));
    auto st = RankedTensorType::get({rows, (dim + group - 1) / group}, b.getF16Type());
    Value table = b.create<ConstantOp>(op.getLoc(), qt, makeResourceAttr(qt, base + ".q", q.codes));
    Value scales = b.create<ConstantOp>(op.getLoc(), st, makeResourceAttr(st, base + ".scales", q.scales));
    auto replacement = b.create<QuantizedEmbeddingOp>(op.getLoc(), op.getType(), table, scales, op.getIndices(),
                                                      b.getStringAttr("int8"), b.getI64IntegerAttr(group));
    const double before = double(rows * dim) * 4.0, after = double(q.codes.size() + q.scales.size());
    replacement->setAttr("lathe.compression",
                         b.getDictionaryAttr({b.getNamedAttr("method", b.getStringAttr("embedding-int8-g" + std::to_string(group))),
                                              b.getNamedAttr("bits_per_weight", b.getF64FloatAttr(8.0 * after / double(rows * dim))),
                                              b.getNamedAttr("bytes_before", b.getI64IntegerAttr(int64_t(before))),
                                              b.getNamedAttr("bytes_after", b.getI64IntegerAttr(int64_t(after))),
                                              b.getNamedAttr("weight_error", b.getF64FloatAttr(q.relativeError))}));
    op.replaceAllUsesWith(replacement.getResult());
    op.erase();
    if (tableOp->use_empty()) tableOp->erase();
    return success();
  }

  LogicalResult rewrite(LinearOp op) {
    auto weightOp = op.getWeight().getDefiningOp<ConstantOp>();
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    if (!weightOp || !type.getElementType().isF32() || !type.hasStaticShape()) {
      op.emitRemark("not quantized: its weight is not a constant f32 tensor");
      return success();
    }
    auto weights = quantize::readF32(weightOp.getValue());
    if (!weights) return op.emitError("cannot read the weight of this linear layer");
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    const bool w8a8 = format == "w8a8";
    const bool storage = format == "bf16" || format == "fp16"; // float storage, no grids
    int64_t group = groupSize;
    if ((format == "int8" && group == 0) || w8a8) group = in;
    const bool subByte = format == "int4" || format == "int3";
    if (subByte && group == 0) group = 32;
    if (subByte && (group % 32 || in % 32)) {
      op.emitRemark("not quantized: ") << format << " needs input features and group size in multiples of 32, got "
          << in << " and " << group;
      return success();
    }
    if (int8Activations && format != "int8" && format != "int4")
      return op.emitError("int8 activations apply to int8 and int4 weights, not ") << format;
    if (int8Activations && format == "int8" && group % 32 && group < in)
      return op.emitError("int8 activations need int8 groups that are multiples of 32 (or one per output channel), got ")
             << group;
    // An N:M-pruned layer (lathe-prune) quantized to int4 keeps its sparsity:
    // its kept values become int4 codes with a grid per group of input columns.
    if (auto sparsity = op->getAttrOfType<DictionaryAttr>("lathe.sparsity")) {
      const std::string patternText = sparsity.getAs<StringAttr>("pattern").str();
      const prune::Pattern p = prune::parsePattern(patternText);
      if (p.structured()) {
        if (format == "int4" && symmetric && method == "rtn" && in % 32 == 0 && compensationRank == 0) {
          std::string error;
          std::vector<uint8_t> keep = prune::maskOf(weights->data(), out, in, p, error);
          if (keep.empty()) return op.emitError("not ") << patternText << " sparse: " << error;
          prune::NmPacked packed = prune::packNm(weights->data(), keep, out, in, p, group);
          return emitSparseLinear(op, p, patternText, packed, group, sparsity, " sym-rtn",
                                  stackedWeightError(sparsity, packed.relativeError));
        }
        op.emitRemark("the ") << patternText << " sparsity is not kept: N:M layers store f32 or symmetric int4 (rtn, "
                              << "no compensation) values; quantized dense as " << format;
        op->removeAttr("lathe.sparsity");
      }
    }
    const bool calibrated = method != "rtn";
    std::optional<std::vector<float>> gram;
    if (calibrated) {
      if (storage) return op.emitError("method ") << method << " applies to int8/int4/int3, not " << format;
      gram = quantize::calibrationArray(op, "xtx", in * in);
      if (!gram) {
        if (onlyCalibrated) return success();
        return op.emitError("method ") << method << " needs this layer's calibration XᵀX (lathe.calibration xtx of "
                                       << in << "x" << in << "): compile with --calibration";
      }
    }
    if (compensationRank > 0 && !gram) gram = quantize::calibrationArray(op, "xtx", in * in); // optional here
    if (compensationRank > 0 && (w8a8 || storage))
      return op.emitError("a low-rank compensation applies to int8/int4/int3 weights, not ") << format;
    // W8A8: static activation scales from the calibration statistics. Per
    // channel, the scales c_i multiply the weight's columns before it is
    // quantized, and the runtime quantizes x_i / c_i (act_scales = 1/c).
    float actScale = 0;
    std::vector<float> actInverse;
    if (w8a8 && actMode == "static") {
      auto absmax = quantize::calibrationArray(op, "absmax", in);
      if (!absmax) {
        if (onlyCalibrated) return success();
        return op.emitError("w8a8 static activation scales need this layer's calibration statistics (max |x| of ")
               << in << " channels): compile with --calibration";
      }
      const double maxAll = *std::max_element(absmax->begin(), absmax->end());
      if (actGranularity == "tensor") {
        double range = maxAll;
        if (actCalibration == "percentile") {
          auto p = quantize::absPercentile(op, actPercentile, maxAll);
          if (!p) return op.emitError("w8a8 percentile scales need the calibration histogram of |x| (abs_hist)");
          range = *p;
        }
        actScale = range > 0 ? float(range / 127.0) : 1.f; // an input that was always 0: any scale
      } else {
        actScale = 1.f;
        actInverse.resize(size_t(in));
        const double floor = maxAll > 0 ? maxAll * 1e-6 : 1.0;
        for (int64_t i = 0; i < in; ++i) {
          const float c = float(std::max(double((*absmax)[size_t(i)]), floor) / 127.0);
          actInverse[size_t(i)] = 1.f / c;
          for (int64_t r = 0; r < out; ++r) (*weights)[size_t(r * in + i)] *= c;
        }
      }
    }
    const quantize::GridSpec spec{w8a8 ? std::string("int8") : std::string(format), group, format == "int8" || w8a8 ? true : bool(symmetric)};
    // Every integer method yields a grid per group and a code per weight; they are
    // packed once, and Ŵ for the layer's output error comes from the same grids.
    quantize::Quantized q;
    std::vector<quantize::Grid> grids;
    std::vector<int16_t> codes;
    if (method == "gptq") {
      quantize::GptqOptions options{dampening, activationOrder, blockSize};
      quantize::GptqResult result = quantize::gptq(spec, weights->data(), out, in, gram->data(), options);
      if (!result.error.empty()) return op.emitError("GPTQ: ") << result.error;
      grids = std::move(result.grids);
      codes = std::move(result.codes);
    } else if (method == "awq") {
      std::vector<float> clip = quantize::searchClip(spec, weights->data(), out, in, gram->data(), {});
      quantize::fitRtn(spec, weights->data(), out, in, grids, codes, &clip);
    } else if (!storage) {
      quantize::fitRtn(spec, weights->data(), out, in, grids, codes);
    }
    if (format == "fp16") {
      // Saturating a weight to ±65504 would change the layer silently: refuse it.
      const int64_t bad = quantize::firstOutsideHalfRange(weights->data(), out * in);
      if (bad >= 0) {
        char value[32];
        std::snprintf(value, sizeof value, "%g", double((*weights)[size_t(bad)]));
        return op.emitError("layer '") << quantize::opName(op) << "': weight [" << bad / in << ", " << bad % in << "] = "
                                       << value << " is outside fp16's range (|w| <= 65504); "
                                       << "store this layer as bf16 or int8 (a recipe override)";
      }
      q = quantize::quantizeF16(*weights, out, in);
    } else {
      q = format == "bf16" ? quantize::quantizeBf16(*weights, out, in)
                           : quantize::packGroups(spec, out, in, grids, codes, weights->data());
    }
    // The layer's output error on the calibration inputs, from XᵀX (the report's
    // measured error covers the whole model; this one is the layer alone).
    double outputError = -1;
    std::vector<float> hat;
    if ((gram && actInverse.empty()) || compensationRank > 0) { // (per-channel W8A8 scaled the weight, not the statistics)
      const int64_t groups = spec.groupsPerRow(in);
      hat.resize(static_cast<size_t>(out * in));
      for (int64_t r = 0; r < out; ++r)
        for (int64_t c = 0; c < in; ++c)
          hat[size_t(r * in + c)] = grids[size_t(r * groups + c / group)].value(codes[size_t(r * in + c)]);
    }
    // Low-rank compensation: E = W − Ŵ ≈ B·A (activation-aware with XᵀX),
    // stored in bf16 and added to the quantized layer's output.
    lowrank::Factors comp;
    std::vector<char> compA, compB;
    if (compensationRank > 0) {
      std::vector<float> residual(hat.size());
      for (size_t i = 0; i < hat.size(); ++i) residual[i] = (*weights)[i] - hat[i];
      comp = lowrank::factorize(residual.data(), out, in, gram ? gram->data() : nullptr, lowrank::RankRule{compensationRank});
      if (!comp.error.empty()) return op.emitError("low-rank compensation: ") << comp.error;
      compA = quantize::quantizeBf16(comp.a, comp.rank, in).codes;
      compB = quantize::quantizeBf16(comp.b, out, comp.rank).codes;
      // Ŵ + B·A with the factors as the runtime reads them (bf16).
      auto bf = [](const std::vector<char> &bytes, size_t i) {
        uint32_t bits = uint32_t(reinterpret_cast<const uint16_t *>(bytes.data())[i]) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
      };
      for (int64_t r = 0; r < out; ++r)
        for (int64_t k = 0; k < comp.rank; ++k) {
          const float br = bf(compB, size_t(r * comp.rank + k));
          for (int64_t c = 0; c < in; ++c) hat[size_t(r * in + c)] += br * bf(compA, size_t(k * in + c));
        }
      double num = 0, den = 0;
      for (size_t i = 0; i < hat.size(); ++i)
        num += double((*weights)[i] - hat[i]) * ((*weights)[i] - hat[i]), den += double((*weights)[i]) * (*weights)[i];
      q.relativeError = den > 0 ? std::sqrt(num / den) : 0.0;
    }
    if (gram && actInverse.empty())
      outputError = std::sqrt(quantize::relativeOutputError(weights->data(), hat.data(), out, in, gram->data()));
    OpBuilder b(op);
    Location loc = op.getLoc();
    std::string base = quantize::opName(op);
    auto constant = [&](RankedTensorType t, const std::vector<char> &bytes, StringRef suffix) -> Value {
      return b.create<ConstantOp>(loc, t, makeResourceAttr(t, (base + suffix).str(), bytes));
    };
    auto i8 = IntegerType::get(&getContext(), 8), u8 = IntegerType::get(&getContext(), 8, IntegerType::Unsigned);
    Type weightType = format == "int8" || w8a8 ? Type(i8)
                      : subByte              ? Type(u8)
                      : format == "fp16"     ? Type(b.getF16Type())
                                             : Type(b.getBF16Type());
    const int64_t stored = format == "int4" ? in / 2 : format == "int3" ? in / 32 * 12 : in;
    Value w = constant(RankedTensorType::get({out, stored}, weightType), q.codes, ".q");
    Value scales, mins;
    if (!storage) {
      auto st = RankedTensorType::get({out, (in + group - 1) / group}, b.getF16Type());
      scales = constant(st, q.scales, ".scales");
      if (!q.mins.empty()) mins = constant(st, q.mins, ".mins");
    }
    Value actScales;
    if (!actInverse.empty()) {
      auto at = RankedTensorType::get({in}, b.getF32Type());
      actScales = b.create<ConstantOp>(loc, at, quantize::f32Resource(at, base + ".act_scales", actInverse));
    }
    auto replacement = b.create<QuantizedLinearOp>(loc, op.getType(), op.getInput(), w, scales, mins, op.getBias(), actScales,
                                                   b.getStringAttr(format), b.getI64IntegerAttr(storage ? in : group),
                                                   actScale > 0 ? b.getF32FloatAttr(actScale) : FloatAttr(),
                                                   int8Activations ? b.getI64IntegerAttr(32) : IntegerAttr());
    double bytesBefore = double(out) * double(in) * 4.0;
    const double bytesAfter = double(q.codes.size() + q.scales.size() + q.mins.size() + actInverse.size() * 4 +
                                     compA.size() + compB.size());
    std::string label = method;
    if (op->hasAttr("lathe.awq")) label = method == "awq" ? "awq" : "awq+" + label;
    std::string methodName =
        storage ? std::string(format)
        : w8a8 ? std::string(op->hasAttr("lathe.smoothquant") ? "sq+" : "") + "w8a8-" +
                     (actMode == "dynamic" ? "dynamic"
                      : "static-" + actGranularity + (actGranularity == "tensor" ? "-" + actCalibration : "")) + "-" + label
               : (format + (subByte ? (symmetric ? "-sym" : "-asym") : "") + "-" + label + "-g" + std::to_string(group));
    if (int8Activations) methodName += "+a8";
    if (compensationRank > 0) methodName += "+lowrank-comp-r" + std::to_string(comp.rank);
    // A factor of a low-rank layer (lathe-low-rank): the row of the layer it
    // came from carries the original bytes, the first factor none.
    if (auto lowrankInfo = op->getAttrOfType<DictionaryAttr>("lathe.lowrank")) {
      methodName = lowrankInfo.getAs<StringAttr>("method").str() + "+" + methodName;
      bytesBefore = double(lowrankInfo.getAs<IntegerAttr>("bytes_before").getInt());
    } else if (auto of = op->getAttrOfType<StringAttr>("lathe.lowrank_factor")) {
      methodName = "factor of " + of.str() + ": " + methodName;
      bytesBefore = 0;
    }
    replacement->setAttr("lathe.compression",
                         b.getDictionaryAttr({b.getNamedAttr("method", b.getStringAttr(methodName)),
                                              b.getNamedAttr("bits_per_weight", b.getF64FloatAttr(8.0 * bytesAfter / double(out * in))),
                                              b.getNamedAttr("bytes_before", b.getI64IntegerAttr(int64_t(bytesBefore))),
                                              b.getNamedAttr("bytes_after", b.getI64IntegerAttr(int64_t(bytesAfter))),
                                              b.getNamedAttr("weight_error", b.getF64FloatAttr(q.relativeError))}));
    if (outputError >= 0) {
      NamedAttrList record(replacement->getAttrOfType<DictionaryAttr>("lathe.compression"));
      record.set("output_error_xtx", b.getF64FloatAttr(outputError));
      replacement->setAttr("lathe.compression", record.getDictionary(&getContext()));
    }
    Value result = replacement.getResult();
    if (compensationRank > 0) {
      // y = Q(x) + (x·Aᵀ)·Bᵀ: the sum keeps the layer's name (taps and the
      // report's measured error see the compensated output).
      auto bf16 = b.getBF16Type();
      auto at = RankedTensorType::get({comp.rank, in}, bf16), bt = RankedTensorType::get({out, comp.rank}, bf16);
      Location aLoc = NameLoc::get(b.getStringAttr(base + ".comp_a")), bLoc = NameLoc::get(b.getStringAttr(base + ".comp_b"));
      Value a = b.create<ConstantOp>(aLoc, at, makeResourceAttr(at, base + ".comp_a", compA));
      Value bw = b.create<ConstantOp>(bLoc, bt, makeResourceAttr(bt, base + ".comp_b", compB));
      auto inner = b.create<QuantizedLinearOp>(aLoc, op.getInput(), a, Value(), Value(), Value(), Value(),
                                               b.getStringAttr("bf16"), b.getI64IntegerAttr(in), FloatAttr(), IntegerAttr());
      auto outer = b.create<QuantizedLinearOp>(bLoc, op.getType(), inner.getResult(), bw, Value(), Value(), Value(), Value(),
                                               b.getStringAttr("bf16"), b.getI64IntegerAttr(comp.rank), FloatAttr(),
                                               IntegerAttr());
      replacement->setLoc(NameLoc::get(b.getStringAttr(base + ".q")));
      NamedAttrList record(replacement->getAttrOfType<DictionaryAttr>("lathe.compression"));
      record.set("layer", b.getStringAttr(base));
      replacement->setAttr("lathe.compression", record.getDictionary(&getContext()));
      result = b.create<AddOp>(loc, op.getType(), replacement.getResult(), outer.getResult()).getResult();
    }
    op.replaceAllUsesWith(result);
    op.erase();
    if (weightOp->use_empty()) weightOp->erase();
    return success();
  }
};

} // namespace
} // namespace lathe::passes
