// lathe-prune: magnitude, Wanda and SparseGPT pruning of lathe.linear weights,
// unstructured or N:M (passes/prune/PruneMath.h); lathe-pack-sparse: N:M layers
// left in f32 become lathe.sparse_linear (passes/prune/NmPack.h).
#include "passes/Passes.h"
#include "passes/prune/NmPack.h"
#include "passes/prune/PruneMath.h"
#include "passes/prune/SparseRewrite.h"
#include "passes/quantize/Gptq.h"
#include "passes/quantize/QuantizeUtils.h"

#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <cmath>
#include <cstdio>

using namespace mlir;
using namespace lathe::ir;

namespace lathe::passes {
#define GEN_PASS_DEF_PRUNE
#define GEN_PASS_DEF_PACKSPARSE
#include "passes/Passes.h.inc"

namespace {

/// The constant f32 [out, in] weight of a linear, or nullopt (with a remark).
std::optional<std::vector<float>> constantWeight(LinearOp op, const char *what) {
  auto weightOp = op.getWeight().getDefiningOp<ConstantOp>();
  auto type = cast<RankedTensorType>(op.getWeight().getType());
  if (!weightOp || !type.getElementType().isF32() || !type.hasStaticShape()) {
    op.emitRemark("not ") << what << ": its weight is not a constant f32 tensor";
    return std::nullopt;
  }
  return quantize::readF32(weightOp.getValue());
}

/// Replaces the linear's weight by `values` (same type), dropping the old
/// constant when nothing else reads it.
void replaceWeight(LinearOp op, const std::vector<float> &values, const std::string &suffix) {
  auto weightOp = op.getWeight().getDefiningOp<ConstantOp>();
  auto type = cast<RankedTensorType>(op.getWeight().getType());
  OpBuilder b(op);
  auto constant = b.create<ConstantOp>(weightOp.getLoc(), type, quantize::f32Resource(type, quantize::opName(op) + suffix, values));
  op->setOperand(1, constant.getResult());
  if (weightOp->use_empty()) weightOp->erase();
}

double relativeDifference(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(a[i]) * a[i];
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

/// Replaces a pruned linear by its sparse form (which keeps lathe.sparsity), dropping the dense weight.
LogicalResult replaceBySparse(LinearOp op, SparseLinearOp replacement, DictionaryAttr sparsity) {
  replacement->setAttr("lathe.sparsity", sparsity);
  auto weightOp = op.getWeight().getDefiningOp<ConstantOp>();
  op.replaceAllUsesWith(replacement.getResult());
  op.erase();
  if (weightOp && weightOp->use_empty()) weightOp->erase();
  return success();
}

double normRatio(const std::vector<float> &a, const std::vector<float> &b) {
  double na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) na += double(a[i]) * a[i], nb += double(b[i]) * b[i];
  return nb > 0 ? std::sqrt(na / nb) : 0.0;
}

struct PrunePass : impl::PruneBase<PrunePass> {
  using PruneBase::PruneBase;

  void runOnOperation() override {
    const prune::Pattern nm = prune::parsePattern(pattern);
    std::string bad;
    if (method != "magnitude" && method != "wanda" && method != "sparsegpt")
      bad = "unknown method '" + method + "' (magnitude, wanda or sparsegpt)";
    else if (!pattern.empty() && !nm.structured()) bad = "pattern must be 2:4 or 4:8 (or empty for unstructured), not '" + pattern + "'";
    else if (!nm.structured() && !(sparsity >= 0 && sparsity < 1)) bad = "sparsity must be in [0, 1)";
    else if (blockSize < 1 || dampening < 0) bad = "block-size must be positive and dampening non-negative";
    if (!bad.empty()) {
      getOperation().emitError("lathe-prune: ") << bad;
      return signalPassFailure();
    }
    SmallVector<LinearOp> layers;
    getOperation().walk([&](LinearOp op) {
      std::string name = quantize::opName(op);
      if (quantize::matchesAny(name, include, true) && !quantize::matchesAny(name, exclude, false) && !op->hasAttr("lathe.sparsity"))
        layers.push_back(op);
    });
    for (LinearOp op : layers)
      if (failed(rewrite(op, nm))) return signalPassFailure();
  }

  LogicalResult rewrite(LinearOp op, prune::Pattern nm) {
    auto weights = constantWeight(op, "pruned");
    if (!weights) return success();
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    if (nm.structured() && in % nm.m) {
      op.emitRemark("not pruned: ") << in << " input features are not a multiple of " << nm.m;
      return success();
    }
    std::optional<std::vector<float>> gram;
    if (method != "magnitude") {
      gram = quantize::calibrationArray(op, "xtx", in * in);
      if (!gram) {
        if (onlyCalibrated) return success();
        return op.emitError("method ") << method << " needs this layer's calibration XᵀX (lathe.calibration xtx of " << in
                                       << "x" << in << "): compile with --calibration";
      }
    }
    std::vector<float> pruned;
    if (method == "sparsegpt") {
      prune::SparseGptResult r = prune::sparseGpt(weights->data(), out, in, gram->data(), sparsity, nm, dampening, blockSize);
      if (!r.error.empty()) return op.emitError("SparseGPT: ") << r.error;
      pruned = std::move(r.weights);
    } else {
      std::vector<float> score(weights->size());
      for (int64_t r = 0; r < out; ++r)
        for (int64_t c = 0; c < in; ++c) {
          const float w = std::fabs((*weights)[size_t(r * in + c)]);
          score[size_t(r * in + c)] = method == "wanda" ? w * std::sqrt(std::max((*gram)[size_t(c * in + c)], 0.f)) : w;
        }
      std::vector<uint8_t> keep = prune::selectMask(score, out, in, sparsity, nm, /*perRow=*/method == "wanda");
      pruned = *weights;
      for (size_t i = 0; i < pruned.size(); ++i)
        if (!keep[i]) pruned[i] = 0.f;
    }
    int64_t zeros = 0;
    for (float v : pruned) zeros += v == 0.f;
    OpBuilder b(op);
    SmallVector<NamedAttribute> record{
        b.getNamedAttr("method", b.getStringAttr(method)),
        b.getNamedAttr("pattern", b.getStringAttr(nm.structured() ? pattern : std::string("unstructured"))),
        b.getNamedAttr("density", b.getF64FloatAttr(1.0 - double(zeros) / double(out * in))),
        b.getNamedAttr("weight_error", b.getF64FloatAttr(relativeDifference(*weights, pruned))),
        b.getNamedAttr("norm_ratio", b.getF64FloatAttr(normRatio(pruned, *weights)))};
    if (gram) record.push_back(b.getNamedAttr(
        "output_error_xtx", b.getF64FloatAttr(std::sqrt(quantize::relativeOutputError(weights->data(), pruned.data(), out, in, gram->data())))));
    replaceWeight(op, pruned, ".pruned");
    op->setAttr("lathe.sparsity", b.getDictionaryAttr(record));
    return success();
  }
};

struct PackSparsePass : impl::PackSparseBase<PackSparsePass> {
  using PackSparseBase::PackSparseBase;

  void runOnOperation() override {
    SmallVector<LinearOp> layers, unstructured;
    getOperation().walk([&](LinearOp op) {
      if (auto s = op->getAttrOfType<DictionaryAttr>("lathe.sparsity")) {
        auto p = s.getAs<StringAttr>("pattern");
        if (p && prune::parsePattern(p.str()).structured()) layers.push_back(op);
        else if (p && p.str() == "unstructured") unstructured.push_back(op);
      }
    });
    for (LinearOp op : layers)
      if (failed(pack(op))) return signalPassFailure();
    for (LinearOp op : unstructured)
      if (failed(packBitmap(op))) return signalPassFailure();
  }

  LogicalResult packBitmap(LinearOp op) {
    auto sparsity = op->getAttrOfType<DictionaryAttr>("lathe.sparsity");
    auto weights = constantWeight(op, "packed");
    if (!weights) return success();
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    const double density = sparsity.getAs<FloatAttr>("density").getValueAsDouble();
    OpBuilder b(op);
    char why[256];
    if (in % 32) {
      std::snprintf(why, sizeof why, "kept dense: the bitmap format needs input features in multiples of 32, got %lld", (long long)in);
      op->setAttr("lathe.sparse_kept_dense", b.getStringAttr(why));
      return success();
    }
    if (density > maxDensity) {
      std::snprintf(why, sizeof why,
                    "kept dense: density %.2f is above %.2f, the highest at which the bitmap kernel beats the dense one "
                    "(measured by lathe-sparse-bench)", density, double(maxDensity));
      op->setAttr("lathe.sparse_kept_dense", b.getStringAttr(why));
      return success();
    }
    prune::BitmapPacked packed = prune::packBitmap(weights->data(), out, in);
    Location loc = op.getLoc();
    const std::string base = quantize::opName(op);
    auto u8 = IntegerType::get(op.getContext(), 8, IntegerType::Unsigned);
    auto vt = RankedTensorType::get({packed.nnz}, b.getF32Type());
    auto mt = RankedTensorType::get({out, in / 8}, u8);
    Value values = b.create<ConstantOp>(loc, vt, makeResourceAttr(vt, base + ".sparse_values", packed.values));
    Value masks = b.create<ConstantOp>(loc, mt, makeResourceAttr(mt, base + ".sparse_bitmap", packed.masks));
    auto replacement = b.create<SparseLinearOp>(loc, op.getType(), op.getInput(), values, masks, Value(), op.getBias(),
                                                b.getStringAttr("unstructured"), b.getStringAttr("f32"),
                                                b.getI64IntegerAttr(in), b.getI64IntegerAttr(0));
    const double before = double(out) * double(in) * 4.0, after = double(packed.values.size() + packed.masks.size());
    std::snprintf(why, sizeof why, "%s-unstructured %.0f%% bitmap-f32", sparsity.getAs<StringAttr>("method").str().c_str(),
                  100.0 * (1.0 - density));
    replacement->setAttr("lathe.compression",
                         b.getDictionaryAttr({b.getNamedAttr("method", b.getStringAttr(why)),
                                              b.getNamedAttr("bits_per_weight", b.getF64FloatAttr(8.0 * after / double(out * in))),
                                              b.getNamedAttr("bytes_before", b.getI64IntegerAttr(int64_t(before))),
                                              b.getNamedAttr("bytes_after", b.getI64IntegerAttr(int64_t(after))),
                                              b.getNamedAttr("weight_error", sparsity.get("weight_error"))}));
    return replaceBySparse(op, replacement, sparsity);
  }

  LogicalResult pack(LinearOp op) {
    auto sparsity = op->getAttrOfType<DictionaryAttr>("lathe.sparsity");
    const std::string patternText = sparsity.getAs<StringAttr>("pattern").str();
    const prune::Pattern p = prune::parsePattern(patternText);
    auto weights = constantWeight(op, "packed");
    if (!weights) return success();
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
    if (in % 32) {
      op.emitRemark("kept dense: the N:M format needs input features in multiples of 32, got ") << in;
      return success();
    }
    std::string error;
    std::vector<uint8_t> keep = prune::maskOf(weights->data(), out, in, p, error);
    if (keep.empty()) return op.emitError("not ") << patternText << " sparse: " << error;
    prune::NmPacked packed = prune::packNm(weights->data(), keep, out, in, p, 0);
    return emitSparseLinear(op, p, patternText, packed, /*group=*/0, sparsity);
  }
};

} // namespace

LogicalResult emitSparseLinear(LinearOp op, prune::Pattern p, const std::string &patternText, const prune::NmPacked &packed,
                               int64_t group, DictionaryAttr sparsity, const std::string &methodSuffix, double weightError) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getWeight().getType());
  const int64_t out = type.getDimSize(0), in = type.getDimSize(1);
  const std::string base = quantize::opName(op);
  auto u8 = IntegerType::get(op.getContext(), 8, IntegerType::Unsigned);
  const bool int4 = group > 0;
  auto vt = int4 ? RankedTensorType::get({out, in / 4}, u8) : RankedTensorType::get({out, in / 2}, b.getF32Type());
  auto it = RankedTensorType::get({out, prune::indexBytesPerRow(in, p)}, u8);
  Value values = b.create<ConstantOp>(loc, vt, makeResourceAttr(vt, base + ".nm_values", packed.values));
  Value indices = b.create<ConstantOp>(loc, it, makeResourceAttr(it, base + ".nm_indices", packed.indices));
  Value scales;
  if (int4) {
    auto st = RankedTensorType::get({out, (in + group - 1) / group}, b.getF16Type());
    scales = b.create<ConstantOp>(loc, st, makeResourceAttr(st, base + ".nm_scales", packed.scales));
  }
  auto replacement = b.create<SparseLinearOp>(loc, op.getType(), op.getInput(), values, indices, scales, op.getBias(),
                                              b.getStringAttr(patternText), b.getStringAttr(int4 ? "int4" : "f32"),
                                              b.getI64IntegerAttr(in), b.getI64IntegerAttr(int4 ? group : 0));
  const double before = double(out) * double(in) * 4.0;
  const double after = double(packed.values.size() + packed.indices.size() + packed.scales.size());
  const std::string method = sparsity.getAs<StringAttr>("method").str() + "-" + patternText + " " +
                             (int4 ? "int4-g" + std::to_string(group) : std::string("f32")) + methodSuffix;
  SmallVector<NamedAttribute> record{b.getNamedAttr("method", b.getStringAttr(method)),
                                     b.getNamedAttr("bits_per_weight", b.getF64FloatAttr(8.0 * after / double(out * in))),
                                     b.getNamedAttr("bytes_before", b.getI64IntegerAttr(int64_t(before))),
                                     b.getNamedAttr("bytes_after", b.getI64IntegerAttr(int64_t(after))),
                                     b.getNamedAttr("weight_error", b.getF64FloatAttr(weightError >= 0 ? weightError : packed.relativeError))};
  replacement->setAttr("lathe.compression", b.getDictionaryAttr(record));
  return replaceBySparse(op, replacement, sparsity);
}

double stackedWeightError(DictionaryAttr sparsity, double quantError) {
  auto get = [&](const char *key) {
    auto a = sparsity.getAs<FloatAttr>(key);
    return a ? a.getValueAsDouble() : 0.0;
  };
  const double prune = get("weight_error"), ratio = get("norm_ratio");
  return std::sqrt(prune * prune + quantError * ratio * quantError * ratio);
}

} // namespace lathe::passes
