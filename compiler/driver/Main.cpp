// lathe: the compiler's command line. Subcommands: check, compile, inspect.
#include "compiler/Version.h"
#include "compiler/driver/Commands.h"
#include "compiler/pipeline/Pipeline.h"
#include "compiler/calibration/Calibration.h"
#include "compiler/pipeline/Report.h"
#include "runtime/tools/Commands.h"
#include "runtime/tools/Eval.h"
#include "runtime/tools/Generate.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/raw_ostream.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <sys/resource.h>
#include <filesystem>
#include <fstream>
#include <iostream>

using namespace lathe;

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct CompileOptions {
  std::string input;
  std::string output;
  std::string compileTo;
  std::string compileFrom;
  bool printIrAfterAll = false;
  std::vector<std::string> printIrAfter;
  std::string dumpDir;
  std::string recipe;
  std::string report; // default: <output>.report.json when a recipe is given
  std::string ggufWeights = "f32";
  std::string calibration;
  int64_t calibrationSamples = 8, calibrationCtx = 256;
  int threads = 0; // runtime threads for calibration and error measurement; 0: physical cores
  bool calibrationXtx = false, calibrationSequential = false;
};

int runCompile(const CompileOptions &o) {
  mlir::MLIRContext context;
  pipeline::registerDialects(context);
  pipeline::DiagnosticPrinter diagnostics(context);
  std::string error;

  bool artifactOutput = endsWith(o.output, ".lathe");
  pipeline::Phase to = artifactOutput ? pipeline::Phase::Package : pipeline::kLastIrPhase;
  if (!o.compileTo.empty()) {
    auto p = pipeline::parsePhase(o.compileTo);
    if (!p) {
      std::cerr << "error: unknown phase '" << o.compileTo << "' for --compile-to (phases: " << pipeline::phaseNames() << ")\n";
      return 2;
    }
    to = *p;
  }
  std::optional<pipeline::Recipe> recipe;
  if (!o.recipe.empty()) {
    recipe = pipeline::loadRecipe(o.recipe, error);
    if (!recipe) {
      std::cerr << "error: " << error << "\n";
      return 1;
    }
  }
  auto module = pipeline::loadModel(context, o.input, error, {o.ggufWeights != "f32", o.ggufWeights == "native-a8"});
  if (!module) {
    std::cerr << "error: " << error << "\n";
    return 1;
  }
  pipeline::Phase from = pipeline::completedPhase(*module).value_or(pipeline::Phase::Import);
  if (!o.compileFrom.empty()) {
    auto p = pipeline::parsePhase(o.compileFrom);
    if (!p) {
      std::cerr << "error: unknown phase '" << o.compileFrom << "' for --compile-from (phases: " << pipeline::phaseNames() << ")\n";
      return 2;
    }
    auto recorded = pipeline::completedPhase(*module);
    if (recorded && *recorded != *p) {
      std::cerr << "error: " << o.input << " was written after phase '" << pipeline::phaseName(*recorded)
                << "', not '" << o.compileFrom << "'\n";
      return 1;
    }
    from = *p;
  }
  if (int(to) < int(from)) {
    std::cerr << "error: --compile-to=" << pipeline::phaseName(to) << " is before the input's phase ("
              << pipeline::phaseName(from) << ")\n";
    return 2;
  }
  if (artifactOutput != (to == pipeline::Phase::Package)) {
    std::cerr << "error: " << (artifactOutput ? "a .lathe artifact is written by the package phase; drop --compile-to or use -o x.mlir/.mlirbc"
                                               : "the package phase writes a .lathe artifact: use -o model.lathe")
              << "\n";
    return 2;
  }
  if (recipe && (int(from) >= int(pipeline::Phase::Compress) || int(to) < int(pipeline::Phase::Compress))) {
    std::cerr << "error: --recipe applies in the compress phase, which this compile does not run (from "
              << pipeline::phaseName(from) << " to " << pipeline::phaseName(to) << ")\n";
    return 2;
  }
  pipeline::IrPrinting printing{o.printIrAfterAll, o.printIrAfter, o.dumpDir};
  std::vector<pipeline::PhaseStat> stats;
  const pipeline::Recipe *recipePtr = recipe ? &*recipe : nullptr;
  std::optional<calibration::CalibrationData> calibrationData;
  mlir::OwningOpRef<mlir::ModuleOp> uncompressed;
  if (!o.calibration.empty()) {
    // Calibration runs between simplify and compress: the statistics go into
    // the IR, and the uncompressed model is kept to measure each layer's error.
    if (int(from) >= int(pipeline::Phase::Compress) || int(to) < int(pipeline::Phase::Compress)) {
      std::cerr << "error: --calibration runs before the compress phase, which this compile does not run\n";
      return 2;
    }
    if (mlir::failed(pipeline::runPhases(*module, from, pipeline::Phase::Simplify, printing, error, recipePtr, &stats))) {
      std::cerr << "error: " << o.input << ": " << error << "\n";
      return 1;
    }
    from = pipeline::Phase::Simplify;
    auto started = std::chrono::steady_clock::now();
    auto data = calibration::loadCalibrationData(*module, o.calibration, o.calibrationSamples, o.calibrationCtx, error);
    if (mlir::failed(data)) {
      std::cerr << "error: calibration: " << error << "\n";
      return 1;
    }
    const bool gram = o.calibrationXtx || (recipe && recipe->needsGram());
    if (o.calibrationSequential) {
      // Stage by stage: each stage calibrated on the outputs of the compressed stages before it.
      if (!recipe) {
        std::cerr << "error: --calibration-sequential needs a --recipe to compress with\n";
        return 2;
      }
      if (mlir::failed(pipeline::checkRecipeMatches(*module, *recipe, error))) {
        std::cerr << "error: " << error << "\n";
        return 2;
      }
      uncompressed = module->clone();
      auto compressStage = [&](mlir::ModuleOp m) {
        mlir::PassManager pm(m.getContext(), mlir::ModuleOp::getOperationName());
        pipeline::buildCompressPipeline(pm, *recipe, /*onlyCalibrated=*/true);
        return pm.run(m);
      };
      if (mlir::failed(calibration::calibrateSequential(*module, *data, o.threads, error, compressStage))) {
        std::cerr << "error: sequential calibration: " << error << "\n";
        return 1;
      }
    } else if (mlir::failed(calibration::calibrate(*module, *data, o.threads, error, gram))) {
      std::cerr << "error: calibration: " << error << "\n";
      return 1;
    }
    calibrationData = std::move(*data);
    stats.push_back({pipeline::Phase::Simplify, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                     pipeline::takePhasePeakRss(), o.calibrationSequential ? "calibrate+compress (sequential)" : "calibrate"});
    if (!uncompressed) uncompressed = module->clone();
  } else if (recipe && recipe->needsCalibrationData()) {
    std::cerr << "error: recipe '" << o.recipe << "' uses a calibrated method (gptq, awq, smoothquant or static activation scales): give --calibration DATA\n";
    return 2;
  }
  if (mlir::failed(pipeline::runPhases(*module, from, to, printing, error, recipePtr, &stats))) {
    std::cerr << "error: " << o.input << ": " << error << "\n";
    return 1;
  }
  std::map<std::string, double> layerErrors;
  if (calibrationData && recipe) {
    // The report's output errors need both models run on the data; 8 evenly
    // spaced batches are plenty for a per-layer relative error, and keep a
    // large calibration set (128 × 512 tokens) from doubling the compile.
    auto started = std::chrono::steady_clock::now();
    size_t used = 0;
    auto measured = calibration::measureLayerErrors(*uncompressed, *module, *calibrationData, o.threads, error, 8, used);
    if (mlir::failed(measured)) {
      std::cerr << "error: measuring the compressed layers: " << error << "\n";
      return 1;
    }
    layerErrors = std::move(*measured);
    if (used < calibrationData->batches.size())
      calibrationData->description += "; output errors on " + std::to_string(used) + " of its " +
                                      std::to_string(calibrationData->batches.size()) + " batches";
    stats.push_back({pipeline::Phase::Compress, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                     pipeline::takePhasePeakRss(), "measure output error"});
  }
  // The report of a recipe: printed, and written as JSON next to the output.
  auto report = [&](uint64_t artifactBytes) {
    if (!recipe && o.ggufWeights == "f32") return true;
    pipeline::CompressionReport r{recipe ? (recipe->name.empty() ? recipe->path : recipe->name) : "none (GGUF weights kept native)", o.input,
                                  pipeline::collectLayers(*module), stats, artifactBytes,
                                  calibrationData ? calibrationData->description : std::string()};
    for (auto &layer : r.layers)
      if (auto it = layerErrors.find(layer.name); it != layerErrors.end()) layer.outputError = it->second;
    pipeline::printReport(r, llvm::outs());
    std::string path = o.report.empty() ? o.output + ".report.json" : o.report;
    std::string reportError;
    if (!pipeline::writeReportJson(r, path, reportError)) {
      std::cerr << "error: " << reportError << "\n";
      return false;
    }
    std::cerr << "wrote " << path << "\n";
    return true;
  };
  if (artifactOutput) {
    std::string pipelineText = pipeline::describePipeline(&context, from, to, recipe ? &*recipe : nullptr);
    auto started = std::chrono::steady_clock::now();
    if (mlir::failed(pipeline::writeArtifactFile(*module, pipelineText, o.output, error))) {
      std::cerr << "error: " << o.input << ": " << error << "\n";
      return 1;
    }
    stats.push_back({pipeline::Phase::Package, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                     pipeline::takePhasePeakRss()});
    std::error_code ec;
    uint64_t bytes = std::filesystem::file_size(o.output, ec);
    std::cerr << "wrote " << o.output << "\n";
    return report(ec ? 0 : bytes) ? 0 : 1;
  }
  if (o.output.empty() || o.output == "-") {
    pipeline::printForReading(*module, llvm::outs());
    return 0;
  }
  if (mlir::failed(pipeline::writeModule(*module, o.output, error))) {
    std::cerr << "error: " << error << "\n";
    return 1;
  }
  std::cerr << "wrote " << o.output << " (after phase " << pipeline::phaseName(to) << ")\n";
  return report(0) ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"lathe: a model-compression compiler (ONNX → lathe IR → compressed artifact)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return std::string(LATHE_COMPILER_VERSION) + "\n" + lathe::tools::cpuSummary(); });

  std::string checkModel;
  auto *check = app.add_subcommand("check", "List every node Lathe cannot import (exit 1 if any)");
  check->add_option("model", checkModel, "model (.onnx or .gguf)")->required();

  CompileOptions compile;
  auto *comp = app.add_subcommand("compile", "Compile a model through the phases");
  comp->add_option("input", compile.input, "model (.onnx, .gguf, .mlir, .mlirbc)")->required();
  comp->add_option("-o,--output", compile.output,
                   "output: .lathe (artifact, all phases), .mlir (text, weights elided) or .mlirbc (resumable bytecode)");
  comp->add_option("--compile-to", compile.compileTo, "stop after this phase (" + pipeline::phaseNames() + ")");
  comp->add_option("--compile-from", compile.compileFrom, "the phase the input has completed; resume with the next one");
  comp->add_flag("--print-ir-after-all", compile.printIrAfterAll, "print the IR after every pass (stderr)");
  comp->add_option("--print-ir-after", compile.printIrAfter, "print the IR after the named pass (repeatable)");
  comp->add_option("--dump-dir", compile.dumpDir, "write numbered per-pass IR files (only when the IR changed)");
  comp->add_option("--recipe", compile.recipe, "compression recipe (YAML/JSON; presets in examples/recipes/)");
  comp->add_option("--report", compile.report, "where the recipe's JSON report goes (default: <output>.report.json)");
  comp->add_option("--calibration", compile.calibration,
                   "calibration data: text (the model's tokenizer), token ids (.npy) or a directory of <input>.npy; "
                   "records per-channel input statistics in the IR and each compressed layer's output error");
  comp->add_option("--calibration-samples", compile.calibrationSamples, "windows of calibration text (default 8)")
      ->check(CLI::PositiveNumber);
  comp->add_option("--calibration-ctx", compile.calibrationCtx, "tokens per calibration window (default 256)")
      ->check(CLI::PositiveNumber);
  comp->add_flag("--calibration-sequential", compile.calibrationSequential,
                 "calibrate and compress stage by stage (the layers between attention ops), each stage on the outputs of "
                 "the already-compressed ones (GPTQ as in the paper; slower)");
  comp->add_flag("--calibration-xtx", compile.calibrationXtx,
                 "also record Σ xᵀx of every linear's input (for GPTQ-style methods; in×in floats per input tensor)");
  comp->add_option("--threads", compile.threads, "runtime threads for calibration (default: physical cores); "
                                                 "the artifact does not depend on it")
      ->check(CLI::NonNegativeNumber);
  comp->add_option("--gguf-weights", compile.ggufWeights,
                   "f32: dequantize GGUF weights; native: keep Q8_0/Q4_0/Q4_1 linear weights as int8/int4 g32 (exact); "
                   "native-a8: those, with int8 activations (inputs quantized per block of 32 at run time, as llama.cpp does)")
      ->check(CLI::IsMember({"f32", "native", "native-a8"}));

  lathe::driver::InspectOptions inspect;
  auto *insp = app.add_subcommand("inspect", "Per-phase tables: op counts, parameters, weight bytes, FLOPs");
  insp->add_option("input", inspect.input, "model (.onnx, .gguf, .mlir, .mlirbc, .lathe)")->required();
  insp->add_option("--batch", inspect.batch, "batch size for FLOPs")->check(CLI::PositiveNumber);
  insp->add_option("--seq", inspect.seq, "sequence length for FLOPs")->check(CLI::PositiveNumber);

  lathe::tools::RunOptions runOptions;
  std::vector<std::string> runInputs;
  auto *runCmd = app.add_subcommand("run", "Run a .lathe artifact on .npy inputs");
  runCmd->add_option("artifact", runOptions.artifact, "model.lathe")->required();
  runCmd->add_option("--input", runInputs, "NAME=path.npy (repeat for every input)");
  runCmd->add_option("--output-dir", runOptions.outputDir, "writes <output name>.npy here");
  runCmd->add_option("--threads", runOptions.threads, "worker threads (default: physical cores)");
  runCmd->add_option("--device", runOptions.device, "cpu (default), cuda or cuda:N (the CUDA plugin; kernels without a CUDA kernel run on the host)");
  runCmd->add_option("--dump", runOptions.dumpPattern, "also write intermediate tensors whose ONNX node matches (glob)");
  runCmd->add_option("--incremental", runOptions.incremental,
                     "causal decoders: run through the KV cache N tokens at a time (writes the first output for every position)")
      ->check(CLI::PositiveNumber);

  lathe::tools::BenchOptions benchOptions;
  auto *benchCmd = app.add_subcommand("bench", "Time a .lathe artifact on synthesized inputs");
  benchCmd->add_option("artifact", benchOptions.artifact, "model.lathe")->required();
  benchCmd->add_option("--batch", benchOptions.batch, "batch size")->check(CLI::PositiveNumber);
  benchCmd->add_option("--seq", benchOptions.seq, "sequence length")->check(CLI::PositiveNumber);
  benchCmd->add_option("--threads", benchOptions.threads, "worker threads (default: physical cores)");
  benchCmd->add_option("--device", benchOptions.device, "cpu (default), cuda or cuda:N (the CUDA plugin; kernels without a CUDA kernel run on the host)");
  benchCmd->add_option("--warmup", benchOptions.warmup, "untimed runs first");
  benchCmd->add_option("--iterations", benchOptions.iterations, "timed runs");
  benchCmd->add_flag("--profile", benchOptions.profile,
                     "then as many runs again with a tap on every kernel: time per op kind and the slowest nodes");

  lathe::tools::EvalOptions evalOptions;
  auto *evalCmd = app.add_subcommand("eval", "Perplexity of a language-model artifact on a text (or token ids)");
  evalCmd->add_option("artifact", evalOptions.artifact, "model.lathe")->required();
  auto *textOpt = evalCmd->add_option("--text", evalOptions.textFile, "UTF-8 text, tokenized with the artifact's tokenizer");
  evalCmd->add_option("--ids", evalOptions.idsFile, "token ids (.npy, 1-D int64/int32) instead of text")->excludes(textOpt);
  evalCmd->add_option("--protocol", evalOptions.protocol,
                      "llama.cpp: llama-perplexity's (windows of --ctx, BOS as the vocabulary asks, second half scored); "
                      "full: every token after each window's first")
      ->check(CLI::IsMember({"llama.cpp", "full"}));
  evalCmd->add_option("--ctx", evalOptions.ctx, "window length in tokens (default 512)")->check(CLI::PositiveNumber);
  evalCmd->add_option("--chunks", evalOptions.chunks, "evaluate only the first N windows (default: all)")->check(CLI::NonNegativeNumber);
  evalCmd->add_option("--batch", evalOptions.batch, "windows per run")->check(CLI::PositiveNumber);
  evalCmd->add_option("--threads", evalOptions.threads, "worker threads (default: physical cores)");
  evalCmd->add_option("--json", evalOptions.jsonPath, "also write the result as JSON");
  evalCmd->add_option("--reference", evalOptions.reference,
                      "compare with this artifact (e.g. the fp32 original): its perplexity, KL divergence, top-1 agreement");
  evalCmd->add_flag("--per-layer", evalOptions.perLayer,
                    "with --reference: each linear layer's relative output error, worst first (taps)");
  evalCmd->add_option("--data", evalOptions.dataDir,
                      "with --reference: DIR/<input>.npy inputs; every output compared vector by vector (cosine, abs error)");

  struct {
    std::string model, calibration, format = "int4", json;
    int64_t groupSize = 0, samples = 4, ctx = 256, top = 20;
    bool asymmetric = false, int8Activations = false;
    int threads = 0;
  } sens;
  auto *sensCmd = app.add_subcommand("sensitivity", "Rank linear layers by the output error compressing each alone causes");
  sensCmd->add_option("model", sens.model, "model (.onnx, .gguf, .mlir, .mlirbc)")->required();
  sensCmd->add_option("--calibration", sens.calibration, "data: text, token ids (.npy) or a directory of <input>.npy")->required();
  sensCmd->add_option("--format", sens.format, "int8 | int4 | int3 | bf16 | fp16")
      ->check(CLI::IsMember({"int8", "int4", "int3", "bf16", "fp16"}));
  sensCmd->add_option("--group-size", sens.groupSize, "weights per scale (0: per channel for int8, 32 for int4/int3)");
  sensCmd->add_flag("--asymmetric", sens.asymmetric, "int4/int3: scale·q + min");
  sensCmd->add_flag("--int8-activations", sens.int8Activations,
                    "int8/int4: the layer's input quantized to int8 per block of 32 at run time (recipe int8_activations)");
  sensCmd->add_option("--calibration-samples", sens.samples, "windows of calibration text (default 4)")->check(CLI::PositiveNumber);
  sensCmd->add_option("--calibration-ctx", sens.ctx, "tokens per window (default 256)")->check(CLI::PositiveNumber);
  sensCmd->add_option("--top", sens.top, "rows to print (default 20; the JSON has all)")->check(CLI::PositiveNumber);
  sensCmd->add_option("--json", sens.json, "write every layer's row as JSON");
  sensCmd->add_option("--threads", sens.threads, "runtime threads (default: physical cores)");

  lathe::tools::GenerateOptions gen;
  auto *genCmd = app.add_subcommand("generate", "Generate tokens with a causal decoder through its KV cache");
  genCmd->add_option("artifact", gen.artifact, "model.lathe")->required();
  auto *promptOpt = genCmd->add_option("--prompt", gen.prompt, "prompt text (tokenized with the artifact's tokenizer)");
  genCmd->add_option("--prompt-ids", gen.promptIds, "prompt token ids, e.g. 1,2,3 (models without a tokenizer)")->excludes(promptOpt);
  genCmd->add_option("--max-new-tokens", gen.maxNewTokens, "tokens to generate (default 64)")->check(CLI::NonNegativeNumber);
  genCmd->add_option("--max-context", gen.maxContext, "KV cache positions (default: prompt + max-new-tokens)")->check(CLI::NonNegativeNumber);
  genCmd->add_option("--temperature", gen.sampling.temperature, "sample at this temperature (default 0: greedy)")->check(CLI::NonNegativeNumber);
  genCmd->add_option("--top-k", gen.sampling.topK, "sample among the k most likely (0: all)")->check(CLI::NonNegativeNumber);
  genCmd->add_option("--top-p", gen.sampling.topP, "nucleus sampling threshold in (0, 1]");
  genCmd->add_option("--seed", gen.seed, "random seed for sampling (default 0)");
  genCmd->add_flag("--ignore-eos", gen.ignoreEos, "keep going past the end-of-sequence token");
  genCmd->add_flag("--quiet", gen.quiet, "print ids, not streamed text");
  genCmd->add_option("--output-ids", gen.outputIds, "write the generated ids (prompt excluded) as int64 .npy");
  genCmd->add_option("--threads", gen.threads, "worker threads (default: physical cores)");
  genCmd->add_option("--device", gen.device, "cpu (default), cuda or cuda:N (the CUDA plugin; kernels without a CUDA kernel run on the host)");

  lathe::driver::BatchOptions batch;
  auto *bat = app.add_subcommand("batch", "Compile many models, each in its own process (see --help)");
  bat->add_option("manifest", batch.manifest,
                  "JSON: [{\"input\": \"a.onnx\", \"output\": \"a.lathe\", \"options\": [\"--compile-to=simplify\"]}, ...]")
      ->required();
  bat->add_option("-j,--jobs", batch.jobs, "parallel workers")->check(CLI::PositiveNumber);
  bat->add_flag("--force", batch.force, "recompile even when outputs are up to date");

  CLI11_PARSE(app, argc, argv);
  if (bat->parsed()) return lathe::driver::runBatch(batch);
  if (runCmd->parsed()) {
    for (const auto &spec : runInputs) {
      auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "error: --input expects NAME=path.npy, got '" << spec << "'\n";
        return 2;
      }
      runOptions.inputs.emplace_back(spec.substr(0, eq), spec.substr(eq + 1));
    }
    return lathe::tools::runArtifactCommand(runOptions);
  }
  if (benchCmd->parsed()) return lathe::tools::benchArtifactCommand(benchOptions);
  if (evalCmd->parsed()) return lathe::tools::evalArtifactCommand(evalOptions);
  if (genCmd->parsed()) return lathe::tools::generateCommand(gen);
  if (sensCmd->parsed()) {
    if (sens.int8Activations && sens.format != "int8" && sens.format != "int4") {
      std::cerr << "error: --int8-activations applies to --format int8 or int4, not " << sens.format << "\n";
      return 1;
    }
    mlir::MLIRContext context;
    pipeline::registerDialects(context);
    pipeline::DiagnosticPrinter diagnostics(context, /*showRemarks=*/false);
    std::string error;
    auto module = pipeline::loadModel(context, sens.model, error);
    if (!module) {
      std::cerr << "error: " << error << "\n";
      return 1;
    }
    pipeline::Phase from = pipeline::completedPhase(*module).value_or(pipeline::Phase::Import);
    if (int(from) < int(pipeline::Phase::Simplify) &&
        mlir::failed(pipeline::runPhases(*module, from, pipeline::Phase::Simplify, {}, error))) {
      std::cerr << "error: " << sens.model << ": " << error << "\n";
      return 1;
    }
    auto data = calibration::loadCalibrationData(*module, sens.calibration, sens.samples, sens.ctx, error);
    if (mlir::failed(data)) {
      std::cerr << "error: calibration: " << error << "\n";
      return 1;
    }
    auto rows = calibration::rankLayers(*module, *data, sens.format, sens.groupSize, !sens.asymmetric, sens.int8Activations,
                                        sens.threads, error);
    if (mlir::failed(rows)) {
      std::cerr << "error: " << error << "\n";
      return 1;
    }
    std::printf("sensitivity to %s%s%s%s on %s: output change when only that layer is compressed\n", sens.format.c_str(),
                sens.groupSize ? (" g" + std::to_string(sens.groupSize)).c_str() : "", sens.asymmetric ? " asym" : "",
                sens.int8Activations ? " + int8 activations" : "", data->description.c_str());
    std::printf("%4s  %-48s %14s %12s\n", "rank", "layer", "error", "saves");
    for (size_t i = 0; i < rows->size() && int64_t(i) < sens.top; ++i)
      std::printf("%4zu  %-48s %14.6e %9.2f MiB\n", i + 1, (*rows)[i].layer.c_str(), (*rows)[i].error,
                  double((*rows)[i].bytesSaved) / double(1 << 20));
    std::printf("(error: mean KL divergence of the next-token distributions for *logits* outputs, else 1 − mean cosine)\n");
    if (!sens.json.empty()) {
      std::ofstream out(sens.json);
      out << "[\n";
      for (size_t i = 0; i < rows->size(); ++i)
        out << "  {\"layer\": \"" << (*rows)[i].layer << "\", \"error\": " << (*rows)[i].error
            << ", \"bytes_saved\": " << (*rows)[i].bytesSaved << "}" << (i + 1 < rows->size() ? "," : "") << "\n";
      out << "]\n";
      if (!out) {
        std::cerr << "error: cannot write '" << sens.json << "'\n";
        return 1;
      }
    }
    return 0;
  }
  if (check->parsed()) return lathe::driver::runCheck(checkModel);
  if (comp->parsed()) return runCompile(compile);
  if (insp->parsed()) return lathe::driver::runInspect(inspect);
  return 2;
}
