#include "runtime/tools/Commands.h"

#include "lathe/Session.h"
#include "runtime/io/Npy.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sys/resource.h>

namespace lathe::tools {
namespace {

std::string safeFileName(const std::string &name) {
  std::string s = name;
  for (char &c : s)
    if (!(isalnum(uint8_t(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s.empty() ? "unnamed" : s;
}

std::vector<int64_t> concreteShape(const TensorInfo &info, int64_t batch, int64_t seq) {
  std::vector<int64_t> shape;
  for (size_t d = 0; d < info.shape.size(); ++d) {
    const auto &dim = info.shape[d];
    if (dim.isStatic()) { shape.push_back(dim.value); continue; }
    std::string sym = dim.symbol;
    std::transform(sym.begin(), sym.end(), sym.begin(), ::tolower);
    bool isBatch = sym.find("batch") != std::string::npos || (sym.find("seq") == std::string::npos && d == 0 && info.shape.size() > 1);
    shape.push_back(isBatch ? batch : seq);
  }
  return shape;
}

Tensor synthesize(const TensorInfo &info, const std::vector<int64_t> &shape) {
  Tensor t = Tensor::zeros(info.dtype, shape);
  std::string lower = info.name;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  bool mask = lower.find("mask") != std::string::npos;
  // Token-type / segment ids index tables of a few rows: keep them 0.
  bool segment = lower.find("type") != std::string::npos || lower.find("segment") != std::string::npos;
  int64_t n = t.numel();
  uint32_t state = 12345;
  for (int64_t i = 0; i < n; ++i) {
    int64_t iv = mask ? 1 : segment ? 0 : 1 + i % 100;
    state = state * 1664525u + 1013904223u;
    float fv = float(state >> 8) / float(1 << 24) * 2.0f - 1.0f;
    switch (info.dtype) {
    case DType::F32: t.data<float>()[i] = fv; break;
    case DType::F64: t.data<double>()[i] = fv; break;
    case DType::I64: t.data<int64_t>()[i] = iv; break;
    case DType::I32: t.data<int32_t>()[i] = int32_t(iv); break;
    case DType::I16: t.data<int16_t>()[i] = int16_t(iv); break;
    case DType::I8: t.data<int8_t>()[i] = int8_t(iv); break;
    case DType::U8: t.data<uint8_t>()[i] = uint8_t(iv); break;
    case DType::Bool: t.data<uint8_t>()[i] = 1; break;
    default: break; // f16/bf16: zeros
    }
  }
  return t;
}

std::string humanBytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / double(1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", double(b) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)b);
  return buf;
}

} // namespace

int runArtifactCommand(const RunOptions &options) {
  auto session = Session::open(options.artifact, {options.threads, ""});
  if (!session) { std::fprintf(stderr, "error: %s\n", session.error().c_str()); return 1; }
  std::map<std::string, Tensor> inputs;
  for (const auto &[name, path] : options.inputs) {
    auto t = io::readNpy(path);
    if (!t) { std::fprintf(stderr, "error: input '%s': %s\n", name.c_str(), t.error().c_str()); return 1; }
    if (inputs.count(name)) { std::fprintf(stderr, "error: input '%s' is given twice\n", name.c_str()); return 1; }
    inputs[name] = *t;
  }
  std::error_code ec;
  std::filesystem::create_directories(options.outputDir, ec);
  if (ec) { std::fprintf(stderr, "error: cannot create output directory '%s': %s\n", options.outputDir.c_str(), ec.message().c_str()); return 1; }
  std::string dumpError;
  if (!options.dumpPattern.empty()) {
    (*session)->addTap(options.dumpPattern, [&](const TapEvent &e) {
      std::string path = (std::filesystem::path(options.outputDir) / (safeFileName(e.tensorName) + ".npy")).string();
      if (Status s = io::writeNpy(path, e.tensor); !s.ok() && dumpError.empty()) dumpError = s.message();
    });
  }
  auto outputs = (*session)->run(inputs);
  if (!outputs) { std::fprintf(stderr, "error: %s\n", outputs.error().c_str()); return 1; }
  if (!dumpError.empty()) { std::fprintf(stderr, "error: --dump: %s\n", dumpError.c_str()); return 1; }
  for (const auto &out : *outputs) {
    std::string path = (std::filesystem::path(options.outputDir) / (safeFileName(out.name) + ".npy")).string();
    if (Status s = io::writeNpy(path, out.tensor); !s.ok()) { std::fprintf(stderr, "error: output '%s': %s\n", out.name.c_str(), s.message().c_str()); return 1; }
    std::printf("%s: %s -> %s\n", out.name.c_str(), out.tensor.describe().c_str(), path.c_str());
  }
  return 0;
}

int benchArtifactCommand(const BenchOptions &options) {
  if (options.batch < 1 || options.seq < 1 || options.iterations < 1 || options.warmup < 0) {
    std::fprintf(stderr, "error: batch, seq and iterations must be >= 1 and warmup >= 0\n");
    return 1;
  }
  auto session = Session::open(options.artifact, {options.threads, ""});
  if (!session) { std::fprintf(stderr, "error: %s\n", session.error().c_str()); return 1; }
  std::map<std::string, Tensor> inputs;
  for (const auto &info : (*session)->inputs()) inputs[info.name] = synthesize(info, concreteShape(info, options.batch, options.seq));
  std::vector<double> ms;
  for (int i = 0; i < options.warmup + options.iterations; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto outputs = (*session)->run(inputs);
    auto end = std::chrono::steady_clock::now();
    if (!outputs) { std::fprintf(stderr, "error: %s\n", outputs.error().c_str()); return 1; }
    if (i >= options.warmup) ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2], p90 = ms[std::min(ms.size() - 1, size_t(double(ms.size()) * 0.9))];
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("artifact      %s\n", options.artifact.c_str());
  std::printf("shape         batch %lld, seq %lld; threads %d; isa %s\n", (long long)options.batch, (long long)options.seq,
              (*session)->threads(), (*session)->isa());
  for (const auto &[name, t] : inputs) std::printf("input         %s %s (synthesized)\n", name.c_str(), t.describe().c_str());
  std::printf("iterations    %d (after %d warm-up)\n", options.iterations, options.warmup);
  std::printf("latency       median %.3f ms, p90 %.3f ms, min %.3f ms\n", median, p90, ms.front());
  std::printf("throughput    %.2f inferences/s, %.1f sequences/s\n", 1000.0 / median, 1000.0 * double(options.batch) / median);
  std::printf("peak RSS      %s\n", humanBytes(uint64_t(usage.ru_maxrss) * 1024).c_str());
  std::printf("activations   %s planned\n", humanBytes((*session)->plannedActivationBytes()).c_str());
  return 0;
}

int inspectArtifactCommand(const std::string &path) {
  auto session = Session::open(path, {1, ""});
  if (!session) { std::fprintf(stderr, "error: %s\n", session.error().c_str()); return 1; }
  const ArtifactInfo &info = (*session)->info();
  std::printf("artifact          %s (%s)\n", path.c_str(), humanBytes(info.fileBytes).c_str());
  std::printf("format version    %d.%d\n", info.formatMajor, info.formatMinor);
  std::printf("compiler version  %s\n", info.compilerVersion.c_str());
  std::printf("source model      %s\n", info.sourceModel.c_str());
  std::printf("pipeline          %s\n", info.pipeline.c_str());
  std::printf("target            isa %s%s\n", info.isa.c_str(), info.cudaArchs.empty() ? "" : ", cuda");
  std::printf("graph             %zu kernels, %zu tensors, weights %s\n", info.numKernels, info.numTensors, humanBytes(info.weightBytes).c_str());
  if (const artifact::Vocabulary *v = (*session)->vocabulary())
    std::printf("tokenizer         %s (pre-tokenizer %s), %zu tokens, %zu merges, bos %lld, eos %lld%s\n", v->model.c_str(),
                v->preTokenizer.c_str(), v->tokens.size(), v->merges.size(), (long long)v->bosId, (long long)v->eosId,
                v->addBos ? ", adds BOS" : "");
  else
    std::printf("tokenizer         none (give token ids)\n");
  for (const auto &in : (*session)->inputs()) std::printf("input             %s\n", in.describe().c_str());
  for (const auto &out : (*session)->outputs()) std::printf("output            %s\n", out.describe().c_str());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &in : (*session)->inputs()) shapes[in.name] = concreteShape(in, 1, 128);
  auto plan = (*session)->plan(shapes);
  if (plan)
    std::printf("memory plan       batch 1, seq 128: arena %s for %zu tensors in %zu buffers (%zu in place); without reuse %s\n",
                humanBytes(plan->arenaBytes).c_str(), plan->tensors, plan->buffers, plan->inPlace, humanBytes(plan->unplannedBytes).c_str());
  else
    std::printf("memory plan       not available at batch 1, seq 128: %s\n", plan.error().c_str());
  std::printf("\n%-48s %-12s %-8s %12s\n", "layer (ONNX node)", "op", "format", "weights");
  for (const auto &l : info.manifest)
    std::printf("%-48s %-12s %-8s %12s\n", l.source.c_str(), l.op.c_str(), l.weightFormat.c_str(), humanBytes(l.weightBytes).c_str());
  return 0;
}

} // namespace lathe::tools
