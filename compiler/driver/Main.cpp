// lathe: the compiler's command line. Subcommands: check, compile, inspect.
#include "compiler/driver/Commands.h"
#include "compiler/pipeline/Pipeline.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/raw_ostream.h"

#include <CLI/CLI.hpp>

#include <iostream>

using namespace lathe;

namespace {

struct CompileOptions {
  std::string input;
  std::string output;
  std::string compileTo;
  std::string compileFrom;
  bool printIrAfterAll = false;
  std::vector<std::string> printIrAfter;
  std::string dumpDir;
};

int runCompile(const CompileOptions &o) {
  mlir::MLIRContext context;
  pipeline::registerDialects(context);
  pipeline::DiagnosticPrinter diagnostics(context);
  std::string error;

  pipeline::Phase to = pipeline::kLastPhase;
  if (!o.compileTo.empty()) {
    auto p = pipeline::parsePhase(o.compileTo);
    if (!p) {
      std::cerr << "error: unknown phase '" << o.compileTo << "' for --compile-to (phases: " << pipeline::phaseNames() << ")\n";
      return 2;
    }
    to = *p;
  }
  auto module = pipeline::loadModel(context, o.input, error);
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
  pipeline::IrPrinting printing{o.printIrAfterAll, o.printIrAfter, o.dumpDir};
  if (mlir::failed(pipeline::runPhases(*module, from, to, printing, error))) {
    std::cerr << "error: " << o.input << ": " << error << "\n";
    return 1;
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
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"lathe: a model-compression compiler (ONNX → lathe IR → compressed artifact)"};
  app.require_subcommand(1);

  std::string checkModel;
  auto *check = app.add_subcommand("check", "List every node Lathe cannot import (exit 1 if any)");
  check->add_option("model", checkModel, "model (.onnx)")->required();

  CompileOptions compile;
  auto *comp = app.add_subcommand("compile", "Compile a model through the phases");
  comp->add_option("input", compile.input, "model (.onnx, .mlir, .mlirbc)")->required();
  comp->add_option("-o,--output", compile.output, "output: .mlir (text, weights elided) or .mlirbc (resumable bytecode)");
  comp->add_option("--compile-to", compile.compileTo, "stop after this phase (" + pipeline::phaseNames() + ")");
  comp->add_option("--compile-from", compile.compileFrom, "the phase the input has completed; resume with the next one");
  comp->add_flag("--print-ir-after-all", compile.printIrAfterAll, "print the IR after every pass (stderr)");
  comp->add_option("--print-ir-after", compile.printIrAfter, "print the IR after the named pass (repeatable)");
  comp->add_option("--dump-dir", compile.dumpDir, "write numbered per-pass IR files (only when the IR changed)");

  lathe::driver::InspectOptions inspect;
  auto *insp = app.add_subcommand("inspect", "Per-phase tables: op counts, parameters, weight bytes, FLOPs");
  insp->add_option("input", inspect.input, "model (.onnx, .mlir, .mlirbc)")->required();
  insp->add_option("--batch", inspect.batch, "batch size for FLOPs")->check(CLI::PositiveNumber);
  insp->add_option("--seq", inspect.seq, "sequence length for FLOPs")->check(CLI::PositiveNumber);

  CLI11_PARSE(app, argc, argv);
  if (check->parsed()) return lathe::driver::runCheck(checkModel);
  if (comp->parsed()) return runCompile(compile);
  if (insp->parsed()) return lathe::driver::runInspect(inspect);
  return 2;
}
