#include "compiler/calibration/Calibration.h"

#include "compiler/artifact/LowerToArtifact.h"
#include "dialects/lathe/LatheDialect.h"
#include "dialects/lathe/ShapeHelpers.h"
#include "lathe/Session.h"
#include "passes/quantize/QuantizeUtils.h"
#include "runtime/artifact/Incremental.h"
#include "runtime/artifact/Vocabulary.h"
#include "runtime/core/ThreadPool.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/io/Npy.h"
#include "runtime/text/Tokenizer.h"
#include "runtime/tools/Eval.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "passes/Passes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace mlir;

namespace lathe::calibration {
namespace {

/// Lowers the module and opens it as a session (through a temporary file the
/// mapping keeps alive after it is unlinked).
FailureOr<std::unique_ptr<Session>> openLowered(const compiler::LoweredArtifact &lowered, int threads, std::string &error) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("lathe-calibration-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()) + ".lathe"))
                         .string();
  error = artifact::writeArtifact(lowered.spec, path);
  if (!error.empty()) return failure();
  auto session = Session::open(path, {threads, ""});
  std::filesystem::remove(path);
  if (!session) {
    error = session.error();
    return failure();
  }
  return std::move(*session);
}


std::optional<artifact::Vocabulary> moduleVocabulary(ModuleOp module) {
  auto attr = module->getAttrOfType<DenseResourceElementsAttr>("lathe.tokenizer");
  if (!attr || !attr.getRawHandle().getBlob()) return std::nullopt;
  auto bytes = attr.getRawHandle().getBlob()->getData();
  artifact::Vocabulary v;
  if (!artifact::decodeVocabulary(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), v).empty()) return std::nullopt;
  return v;
}

} // namespace

FailureOr<std::unique_ptr<Session>> openModule(ModuleOp module, int threads, std::string &error) {
  auto lowered = compiler::lowerToArtifact(module, "calibration", error);
  if (!lowered) return failure();
  return openLowered(*lowered, threads, error);
}

FailureOr<CalibrationData> loadCalibrationData(ModuleOp module, const std::string &path, int64_t samples, int64_t ctx,
                                               std::string &error) {
  CalibrationData data;
  auto main = *module.getOps<func::FuncOp>().begin();
  std::vector<std::pair<std::string, Type>> inputs;
  for (unsigned i = 0; i < main.getNumArguments(); ++i) {
    auto name = main.getArgAttrOfType<StringAttr>(i, "lathe.name");
    inputs.emplace_back(name ? name.str() : "input" + std::to_string(i),
                        cast<RankedTensorType>(main.getArgument(i).getType()).getElementType());
  }
  if (std::filesystem::is_directory(path)) {
    std::map<std::string, Tensor> feeds;
    for (const auto &[name, type] : inputs) {
      auto t = io::readNpy((std::filesystem::path(path) / (name + ".npy")).string());
      if (!t) {
        error = "calibration input '" + name + "': " + t.error();
        return failure();
      }
      feeds[name] = std::move(*t);
    }
    data.batches.push_back(std::move(feeds));
    data.description = "the inputs in " + path;
    return data;
  }
  std::vector<int32_t> ids;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
    auto t = io::readNpy(path);
    if (!t || t->rank() != 1 || (t->dtype() != DType::I64 && t->dtype() != DType::I32)) {
      error = path + ": expected a 1-D integer array of token ids" + (t ? "" : ": " + t.error());
      return failure();
    }
    for (int64_t i = 0; i < t->numel(); ++i)
      ids.push_back(t->dtype() == DType::I64 ? int32_t(t->data<int64_t>()[i]) : t->data<int32_t>()[i]);
  } else {
    auto vocabulary = moduleVocabulary(module);
    if (!vocabulary) {
      error = "calibration text '" + path + "' needs the model's tokenizer, which this model lacks (give token ids as .npy "
              "or a directory of input .npy files)";
      return failure();
    }
    auto tokenizer = text::Tokenizer::create(*vocabulary);
    if (!tokenizer) {
      error = "the model's tokenizer: " + tokenizer.error();
      return failure();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      error = "cannot read calibration text '" + path + "'";
      return failure();
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    ids = tokenizer->encode(buffer.str(), /*addBos=*/true, /*parseSpecial=*/false);
  }
  if (ctx < 2 || samples < 1) {
    error = "calibration needs at least one window of at least 2 tokens";
    return failure();
  }
  const int64_t windows = std::min<int64_t>(samples, int64_t(ids.size()) / ctx);
  if (windows < 1) {
    error = path + " has " + std::to_string(ids.size()) + " tokens, fewer than one calibration window of " + std::to_string(ctx);
    return failure();
  }
  for (int64_t w = 0; w < windows; ++w) {
    std::map<std::string, Tensor> feeds;
    for (const auto &[name, type] : inputs) {
      const bool i32 = type.isInteger(32);
      Tensor t = Tensor::zeros(i32 ? DType::I32 : DType::I64, {1, ctx});
      const artifact::InputRole role = artifact::classifyInput(name);
      for (int64_t j = 0; j < ctx; ++j) {
        int64_t v = role == artifact::InputRole::Ids ? ids[size_t(w * ctx + j)]
                    : role == artifact::InputRole::Mask ? 1
                    : role == artifact::InputRole::Positions ? j : 0;
        if (i32) t.data<int32_t>()[j] = int32_t(v);
        else t.data<int64_t>()[j] = v;
      }
      feeds[name] = std::move(t);
    }
    data.batches.push_back(std::move(feeds));
  }
  data.description = std::to_string(windows) + " windows of " + std::to_string(ctx) + " tokens from " + path;
  return data;
}

namespace {

/// Σ xᵀx of one tensor's rows, batch after batch, on `threads` threads with the
/// runtime's fp32 GEMM: only the lower triangle, in column panels dealt round-
/// robin to the threads (panel p costs ∝ width − p·panel, so dealing them out
/// in turn balances the triangle). Each batch's product is summed in f32 over
/// its rows in a fixed order, then added into f64, so the result does not
/// depend on the thread count.
class GramAccumulator {
public:
  GramAccumulator(core::ThreadPool &pool, const cpu::IsaTable *isa) : pool_(pool), isa_(isa) {}
  void add(Eigen::MatrixXd &g, const float *x, int64_t rows, int64_t width) {
    if (g.rows() != width) g = Eigen::MatrixXd::Zero(width, width);
    transposed_.resize(size_t(rows * width));
    batch_.resize(size_t(width * width));
    const int64_t panel = std::max<int64_t>(isa_->gemmPanelWidth, 16), panels = (width + panel - 1) / panel;
    const int threads = pool_.size();
    pool_.parallelFor(width, [&](int64_t i0, int64_t i1) { // Xᵀ, in 16 × 16 tiles
      for (int64_t r0 = 0; r0 < rows; r0 += 16)
        for (int64_t ib = i0; ib < i1; ib += 16)
          for (int64_t i = ib; i < std::min(i1, ib + 16); ++i)
            for (int64_t r = r0; r < std::min(rows, r0 + 16); ++r) transposed_[size_t(i * rows + r)] = x[r * width + i];
    }, 16);
    pool_.parallelFor(threads, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t p = t; p < panels; p += threads) {
          const int64_t j0 = p * panel, j1 = std::min(width, j0 + panel);
          // C[i, j] for i ≥ j0, j ∈ [j0, j1): Xᵀ[j0.., :] · X[:, j0..j1).
          cpu::GemmArgs a{transposed_.data() + j0 * rows, rows, x, width, 0, batch_.data() + j0 * width, width,
                          nullptr, width - j0, width, rows, nullptr};
          isa_->gemm(&a, j0, j1);
          for (int64_t j = j0; j < j1; ++j)
            for (int64_t i = j; i < width; ++i) g(i, j) += double(batch_[size_t(i * width + j)]);
        }
    });
  }

private:
  core::ThreadPool &pool_;
  const cpu::IsaTable *isa_;
  std::vector<float> transposed_, batch_;
};

} // namespace

LogicalResult calibrate(ModuleOp module, const CalibrationData &data, int threads, std::string &error, bool gram,
                        const std::function<bool(Operation *)> &only, const std::string &progressLabel) {
  // Which layers to observe (by ordinal); runs stop once all of them were seen.
  std::vector<char> wanted;
  module.walk([&](ir::LinearOp op) { wanted.push_back(!only || only(op)); });
  const size_t wantedCount = size_t(std::count(wanted.begin(), wanted.end(), 1));
  if (wantedCount == 0) return success();
  auto lowered = compiler::lowerToArtifact(module, "calibration", error);
  if (!lowered) return failure();
  // Which tensor feeds each linear kernel (by index: names need not be unique).
  struct Stats {
    std::vector<double> absmax, sumAbs;
    int64_t positions = 0;
  };
  std::map<int32_t, Eigen::MatrixXd> grams; // per input tensor: Σ xᵀx (lower triangle only)
  // Linear layers by ordinal: the n-th f32 linear kernel is the n-th lathe.linear
  // of the function (lowering keeps op order; node names need not be unique, e.g.
  // a fused QKV projection split in three).
  std::map<int32_t, std::vector<size_t>> consumers; // input tensor → linear ordinals reading it
  std::vector<Stats> stats;
  for (const auto &kernel : lowered->spec.kernels)
    if (kernel.op == "linear" && kernel.weightFormat == "f32" && !kernel.inputs.empty()) {
      if (stats.size() < wanted.size() && wanted[stats.size()]) consumers[kernel.inputs[0]].push_back(stats.size());
      stats.emplace_back();
    }
  size_t seenThisRun = 0;
  Session *running = nullptr;
  auto session = openLowered(*lowered, threads, error);
  lowered.reset();
  if (failed(session)) return failure();
  std::string isaError;
  const cpu::IsaTable *isa = cpu::selectIsa("", isaError);
  if (!isa) {
    error = isaError;
    return failure();
  }
  core::ThreadPool pool(std::max(threads > 0 ? threads : core::ThreadPool::physicalCores(), 1));
  GramAccumulator accumulate(pool, isa);
  std::vector<double> absmax, sumAbs;
  // Per input tensor: a histogram of |x| over all its values, for static
  // activation scales at a percentile (quantize::kAbsHistogramBins bins: a float's
  // exponent and top mantissa bits, so bin edges are exact floats ~3 % apart).
  std::map<int32_t, std::vector<uint64_t>> histograms;
  std::mutex histogramMutex;
  (*session)->addTap("*", [&](const TapEvent &e) {
    auto it = consumers.find(e.tensorIndex);
    if (it == consumers.end() || e.tensor.dtype() != DType::F32 || e.tensor.rank() == 0) return;
    const int64_t width = e.tensor.shape().back(), rows = width ? e.tensor.numel() / width : 0;
    const float *x = e.tensor.data<float>();
    if (gram) accumulate.add(grams[e.tensorIndex], x, rows, width);
    // Per-channel |x| statistics once per tensor (q/k/v read the same one), columns split over the threads.
    absmax.assign(size_t(width), 0.0);
    sumAbs.assign(size_t(width), 0.0);
    std::vector<uint64_t> &histogram = histograms[e.tensorIndex];
    histogram.resize(quantize::kAbsHistogramBins);
    pool.parallelFor(width, [&](int64_t i0, int64_t i1) {
      std::vector<uint32_t> local(quantize::kAbsHistogramBins, 0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = i0; i < i1; ++i) {
          const float f = std::fabs(x[r * width + i]);
          const double v = f;
          absmax[size_t(i)] = std::max(absmax[size_t(i)], v);
          sumAbs[size_t(i)] += v;
          uint32_t bits;
          std::memcpy(&bits, &f, 4);
          ++local[std::min<uint32_t>(bits >> quantize::kAbsHistogramShift, quantize::kAbsHistogramBins - 1)];
        }
      std::lock_guard<std::mutex> lock(histogramMutex);
      for (size_t b = 0; b < local.size(); ++b) histogram[b] += local[b];
    }, 16);
    for (size_t layer : it->second) {
      Stats &s = stats[layer];
      if (s.absmax.empty()) s.absmax.assign(size_t(width), 0.0), s.sumAbs.assign(size_t(width), 0.0);
      for (int64_t i = 0; i < width; ++i) {
        s.absmax[size_t(i)] = std::max(s.absmax[size_t(i)], absmax[size_t(i)]);
        s.sumAbs[size_t(i)] += sumAbs[size_t(i)];
      }
      s.positions += rows;
      ++seenThisRun;
    }
    // Once every wanted layer's input was seen, the rest (an LM's output head) need not run.
    if (seenThisRun == wantedCount && running) running->requestStop();
  });
  running = session->get();
  auto started = std::chrono::steady_clock::now();
  for (size_t b = 0; b < data.batches.size(); ++b) {
    seenThisRun = 0;
    auto out = (*session)->run(data.batches[b]);
    if (!out) {
      error = "calibration run " + std::to_string(b) + ": " + out.error();
      return failure();
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "%scalibration%s: %zu/%zu batches, %zu layers observed, %.0f s left%s", isatty(2) ? "\r" : "",
                 progressLabel.c_str(), b + 1, data.batches.size(), size_t(std::count_if(stats.begin(), stats.end(), [](const Stats &s) { return s.positions > 0; })),
                 elapsed / double(b + 1) * double(data.batches.size() - b - 1),
                 isatty(2) ? "   " : "\n");
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  // Write the statistics into the IR, on the layers they belong to.
  OpBuilder builder(module.getContext());
  std::map<size_t, Attribute> gramOf; // linear ordinal → its input's XᵀX (one blob per input tensor)
  for (auto &[tensor, g] : grams) {
    const int64_t k = g.rows();
    std::vector<float> full(size_t(k * k));
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j <= i; ++j) full[size_t(i * k + j)] = full[size_t(j * k + i)] = float(g(i, j)); // the lower triangle holds the sums
    auto type = RankedTensorType::get({k, k}, builder.getF32Type());
    Attribute attr = ir::makeResourceAttr(type, "xtx", {reinterpret_cast<const char *>(full.data()), full.size() * 4});
    for (size_t layer : consumers[tensor]) gramOf[layer] = attr;
  }
  std::map<size_t, Attribute> histogramOf; // linear ordinal → its input's |x| histogram
  for (auto &[tensor, h] : histograms) {
    auto type = RankedTensorType::get({int64_t(h.size())}, builder.getI64Type());
    Attribute attr = ir::makeResourceAttr(type, "abs_hist", {reinterpret_cast<const char *>(h.data()), h.size() * 8});
    for (size_t layer : consumers[tensor]) histogramOf[layer] = attr;
  }
  size_t ordinal = 0;
  module.walk([&](ir::LinearOp op) {
    const size_t layer = ordinal++;
    if (layer >= stats.size() || stats[layer].positions == 0) return;
    const Stats &s = stats[layer];
    const std::string name = quantize::opName(op);
    auto vector = [&](const std::vector<double> &values, double scale, const std::string &suffix) {
      std::vector<float> f(values.size());
      for (size_t i = 0; i < values.size(); ++i) f[i] = float(values[i] * scale);
      auto type = RankedTensorType::get({int64_t(f.size())}, builder.getF32Type());
      return ir::makeResourceAttr(type, name + suffix, {reinterpret_cast<const char *>(f.data()), f.size() * 4});
    };
    SmallVector<NamedAttribute> entries = {
        builder.getNamedAttr("positions", builder.getI64IntegerAttr(s.positions)),
        builder.getNamedAttr("absmax", vector(s.absmax, 1.0, ".absmax")),
        builder.getNamedAttr("mean_abs", vector(s.sumAbs, 1.0 / double(std::max<int64_t>(s.positions, 1)), ".mean_abs"))};
    if (auto g = gramOf.find(layer); g != gramOf.end()) entries.push_back(builder.getNamedAttr("xtx", g->second));
    if (auto h = histogramOf.find(layer); h != histogramOf.end()) entries.push_back(builder.getNamedAttr("abs_hist", h->second));
    op->setAttr("lathe.calibration", builder.getDictionaryAttr(entries));
  });
  return success();
}

LogicalResult calibrateSequential(ModuleOp module, const CalibrationData &data, int threads, std::string &error,
                                  const std::function<LogicalResult(ModuleOp)> &compress) {
  // Stages: the linears between consecutive attention ops (a transformer block's
  // o/FFN projections and the next block's q/k/v), in program order.
  int64_t stage = 0, stages = 0;
  auto builder = OpBuilder(module.getContext());
  module.walk([&](Operation *op) {
    if (isa<ir::AttentionOp>(op)) ++stage;
    if (isa<ir::LinearOp>(op)) {
      op->setAttr("lathe.calibration_stage", builder.getI64IntegerAttr(stage));
      stages = stage + 1;
    }
  });
  auto started = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < stages; ++k) {
    auto inStage = [k](Operation *op) {
      auto a = op->getAttrOfType<IntegerAttr>("lathe.calibration_stage");
      return a && a.getInt() == k;
    };
    const std::string label = " (sequential, stage " + std::to_string(k + 1) + "/" + std::to_string(stages) + ")";
    if (failed(calibrate(module, data, threads, error, /*gram=*/true, inStage, label))) return failure();
    if (failed(compress(module))) {
      error = "compressing stage " + std::to_string(k + 1) + " failed";
      return failure();
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "sequential calibration: %lld/%lld stages compressed, %.0f s elapsed\n", (long long)(k + 1),
                 (long long)stages, elapsed);
  }
  module.walk([](Operation *op) { op->removeAttr("lathe.calibration_stage"); });
  return success();
}

FailureOr<std::map<std::string, double>> measureLayerErrors(ModuleOp reference, ModuleOp compressed, const CalibrationData &data,
                                                           int threads, std::string &error, size_t maxBatches, size_t &used) {
  auto ref = openModule(reference, threads, error);
  if (failed(ref)) return failure();
  auto model = openModule(compressed, threads, error);
  if (failed(model)) return failure();
  std::vector<std::map<std::string, Tensor>> batches;
  const size_t total = data.batches.size(), take = maxBatches && maxBatches < total ? maxBatches : total;
  for (size_t i = 0; i < take; ++i) batches.push_back(data.batches[i * total / take]);
  used = take;
  auto rows = tools::compareLayers(**model, **ref, batches);
  if (!rows) {
    error = rows.error();
    return failure();
  }
  std::map<std::string, double> out;
  for (const auto &r : *rows) out[r.name] = r.relative;
  return out;
}

namespace {

/// How far `got` is from `want` (first outputs): mean KL(want ‖ got) over the
/// rows of a [.., vocab] logits tensor named *logits*, else 1 − mean cosine of
/// the vectors along the last axis.
double outputDistance(const Tensor &want, const Tensor &got, bool logits) {
  const int64_t width = want.shape().back(), rows = width ? want.numel() / width : 0;
  double total = 0;
  std::vector<double> p(static_cast<size_t>(width)), q(static_cast<size_t>(width));
  for (int64_t r = 0; r < rows; ++r) {
    const float *a = want.data<float>() + r * width, *b = got.data<float>() + r * width;
    if (logits) {
      auto logSoftmax = [width](const float *x, std::vector<double> &out) {
        double max = *std::max_element(x, x + width), sum = 0;
        for (int64_t i = 0; i < width; ++i) sum += std::exp(double(x[i]) - max);
        for (int64_t i = 0; i < width; ++i) out[size_t(i)] = double(x[i]) - max - std::log(sum);
      };
      logSoftmax(a, p);
      logSoftmax(b, q);
      double k = 0;
      for (int64_t i = 0; i < width; ++i) k += std::exp(p[size_t(i)]) * (p[size_t(i)] - q[size_t(i)]);
      total += k;
    } else {
      double dot = 0, na = 0, nb = 0;
      for (int64_t i = 0; i < width; ++i) dot += double(a[i]) * b[i], na += double(a[i]) * a[i], nb += double(b[i]) * b[i];
      total += 1.0 - ((na > 0 && nb > 0) ? dot / std::sqrt(na * nb) : 1.0);
    }
  }
  return rows ? total / double(rows) : 0.0;
}

} // namespace

FailureOr<std::vector<SensitivityRow>> rankLayers(ModuleOp module, const CalibrationData &data, const std::string &format,
                                                  int64_t groupSize, bool symmetric, bool int8Activations, int threads,
                                                  std::string &error) {
  auto reference = openModule(module, threads, error);
  if (failed(reference)) return failure();
  std::vector<Tensor> want;
  for (const auto &feeds : data.batches) {
    auto out = (*reference)->run(feeds);
    if (!out) {
      error = out.error();
      return failure();
    }
    want.push_back(std::move((*out)[0].tensor));
  }
  std::string outputName = (*reference)->outputs()[0].name;
  std::transform(outputName.begin(), outputName.end(), outputName.begin(), ::tolower);
  const bool logits = outputName.find("logits") != std::string::npos;
  reference->reset();
  std::vector<std::string> layers;
  module.walk([&](ir::LinearOp op) { layers.push_back(quantize::opName(op)); });
  std::vector<SensitivityRow> rows;
  auto started = std::chrono::steady_clock::now();
  for (size_t l = 0; l < layers.size(); ++l) {
    OwningOpRef<ModuleOp> one = module.clone();
    PassManager pm(module.getContext());
    passes::QuantizeWeightsOptions options;
    options.format = format;
    options.groupSize = groupSize;
    options.symmetric = symmetric;
    options.int8Activations = int8Activations;
    std::vector<std::string> include = {layers[l]}; // the options refer to it until the pass is created
    options.include = include;
    pm.nest<func::FuncOp>().addPass(passes::createQuantizeWeights(options));
    if (failed(pm.run(*one))) {
      error = "quantizing layer '" + layers[l] + "' failed";
      return failure();
    }
    SensitivityRow row{layers[l], 0, 0};
    one->walk([&](ir::QuantizedLinearOp op) {
      if (auto info = op->getAttrOfType<DictionaryAttr>("lathe.compression"))
        row.bytesSaved = info.getAs<IntegerAttr>("bytes_before").getInt() - info.getAs<IntegerAttr>("bytes_after").getInt();
    });
    auto session = openModule(*one, threads, error);
    if (failed(session)) return failure();
    for (size_t b = 0; b < data.batches.size(); ++b) {
      auto out = (*session)->run(data.batches[b]);
      if (!out) {
        error = "layer '" + layers[l] + "': " + out.error();
        return failure();
      }
      row.error += outputDistance(want[b], (*out)[0].tensor, logits) / double(data.batches.size());
    }
    rows.push_back(row);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "%ssensitivity: %zu/%zu layers, %.0f s left%s", isatty(2) ? "\r" : "", l + 1, layers.size(),
                 elapsed / double(l + 1) * double(layers.size() - l - 1), isatty(2) ? "   " : "\n");
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  std::stable_sort(rows.begin(), rows.end(), [](const SensitivityRow &a, const SensitivityRow &b) { return a.error > b.error; });
  return rows;
}

} // namespace lathe::calibration
