#include "compiler/pipeline/Pipeline.h"

#include "compiler/artifact/LowerToArtifact.h"
#include "compiler/import/gguf/ImportGguf.h"
#include "compiler/import/onnx/ImportOnnx.h"
#include "dialects/lathe/LatheDialect.h"
#include "passes/Passes.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sys/resource.h>
#include <iomanip>
#include <map>
#include <sstream>

using namespace mlir;

namespace lathe::pipeline {

uint64_t takePhasePeakRss() {
  uint64_t hwmKb = 0;
  if (std::FILE *f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %lu kB", &hwmKb) == 1) break;
    std::fclose(f);
  }
  if (hwmKb > 0) {
    if (std::FILE *f = std::fopen("/proc/self/clear_refs", "w")) { // "5": reset the peak to the current size
      std::fputs("5", f);
      std::fclose(f);
    }
    return hwmKb * 1024;
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return uint64_t(usage.ru_maxrss) * 1024;
}

static const char *kPhaseNames[] = {"import", "simplify", "compress", "lower", "package"};

std::optional<Phase> parsePhase(const std::string &name) {
  for (int i = 0; i <= int(kLastPhase); ++i)
    if (name == kPhaseNames[i]) return Phase(i);
  return std::nullopt;
}

const char *phaseName(Phase phase) { return kPhaseNames[int(phase)]; }

std::string phaseNames() {
  std::string out;
  for (int i = 0; i <= int(kLastPhase); ++i) out += (i ? ", " : "") + std::string(kPhaseNames[i]);
  return out;
}

std::optional<Phase> completedPhase(ModuleOp module) {
  auto attr = module->getAttrOfType<StringAttr>("lathe.phase");
  if (!attr) return std::nullopt;
  return parsePhase(attr.str());
}

void registerDialects(MLIRContext &context) {
  DialectRegistry registry;
  registry.insert<ir::LatheDialect, func::FuncDialect>();
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();
  context.printOpOnDiagnostic(false);
}

static bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

OwningOpRef<ModuleOp> loadModel(MLIRContext &context, const std::string &path, std::string &error,
                                const LoadOptions &options) {
  // An imported module records its phase and must verify before any pass runs.
  auto finishImport = [&](OwningOpRef<ModuleOp> module) -> OwningOpRef<ModuleOp> {
    module->getOperation()->setAttr("lathe.phase", StringAttr::get(&context, "import"));
    if (failed(verify(*module))) {
      error = path + ": the imported IR does not verify (see the diagnostics above)";
      return nullptr;
    }
    return module;
  };
  if (!std::filesystem::exists(path)) {
    error = "no such file: " + path;
    return nullptr;
  }
  if (endsWith(path, ".onnx")) {
    auto result = importer::importOnnxFile(context, path);
    if (!result.fatalError.empty()) {
      error = path + ": " + result.fatalError;
      return nullptr;
    }
    if (!result.problems.empty()) {
      std::ostringstream os;
      os << path << ": " << result.problems.size() << " node(s) cannot be imported:\n";
      for (const auto &p : result.problems)
        os << "  " << p.nodeName << " (" << p.opType << ", opset " << p.opset << "): " << p.reason << "\n";
      os << "run `lathe check " << path << "` for the full table";
      error = os.str();
      return nullptr;
    }
    return finishImport(std::move(result.module));
  }
  if (endsWith(path, ".gguf")) {
    auto result = importer::importGgufFile(context, path, {options.ggufNative, options.ggufInt8Activations});
    if (!result.fatalError.empty()) {
      error = path + ": " + result.fatalError;
      return nullptr;
    }
    if (!result.problems.empty()) {
      std::ostringstream os;
      os << path << ": " << result.problems.size() << " problem(s) prevent the import:\n";
      for (const auto &p : result.problems) os << "  " << p << "\n";
      error = os.str();
      error.pop_back();
      return nullptr;
    }
    return finishImport(std::move(result.module));
  }
  if (endsWith(path, ".mlir") || endsWith(path, ".mlirbc")) {
    llvm::SourceMgr sourceMgr;
    std::string message;
    auto file = openInputFile(path, &message);
    if (!file) {
      error = message;
      return nullptr;
    }
    sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
    std::string diagnostics;
    llvm::raw_string_ostream diagStream(diagnostics);
    SourceMgrDiagnosticHandler handler(sourceMgr, &context, diagStream);
    auto module = parseSourceFile<ModuleOp>(sourceMgr, ParserConfig(&context));
    if (!module) {
      error = path + " could not be parsed:\n" + diagnostics;
      return nullptr;
    }
    return module;
  }
  error = path + ": unknown file type (expected .onnx, .gguf, .mlir or .mlirbc)";
  return nullptr;
}

static std::string describeLocation(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc)) return "node '" + name.getName().str() + "'";
  if (auto file = dyn_cast<FileLineColLoc>(loc)) {
    if (file.getLine() == 0) return file.getFilename().str();
    return file.getFilename().str() + ":" + std::to_string(file.getLine()) + ":" + std::to_string(file.getColumn());
  }
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations()) return describeLocation(inner);
  std::string s;
  llvm::raw_string_ostream os(s);
  loc.print(os);
  return s;
}

DiagnosticPrinter::DiagnosticPrinter(MLIRContext &context, bool showRemarks) : context_(context) {
  id_ = context.getDiagEngine().registerHandler([this, showRemarks](Diagnostic &d) {
    const char *kind = "error";
    switch (d.getSeverity()) {
    case DiagnosticSeverity::Remark: if (!showRemarks) return success(); kind = "remark"; break;
    case DiagnosticSeverity::Warning: kind = "warning"; break;
    case DiagnosticSeverity::Note: kind = "note"; break;
    case DiagnosticSeverity::Error: ++errors_; break;
    }
    llvm::errs() << describeLocation(d.getLocation()) << ": " << kind << ": " << d.str() << "\n";
    for (Diagnostic &note : d.getNotes())
      llvm::errs() << "  " << describeLocation(note.getLocation()) << ": note: " << note.str() << "\n";
    return success();
  });
}

DiagnosticPrinter::~DiagnosticPrinter() { context_.getDiagEngine().eraseHandler(id_); }

void printForReading(Operation *op, llvm::raw_ostream &os) {
  OpPrintingFlags flags;
  flags.elideLargeElementsAttrs(16);
  flags.elideLargeResourceString(64);
  flags.enableDebugInfo(true, /*prettyForm=*/false);
  op->print(os, flags);
  os << "\n";
}

namespace {
/// Numbered per-pass text files, written only when a pass changed the IR.
class DumpDirInstrumentation : public PassInstrumentation {
public:
  explicit DumpDirInstrumentation(std::string dir) : dir_(std::move(dir)) {}
  void runBeforePass(Pass *, Operation *op) override {
    before_.erase(op);
    before_.try_emplace(op, OperationFingerPrint(op));
  }
  void runAfterPass(Pass *pass, Operation *op) override {
    if (pass->getArgument().empty()) return; // pass-manager adaptors, not passes
    auto it = before_.find(op);
    if (it != before_.end() && it->second == OperationFingerPrint(op)) return;
    std::ostringstream name;
    name << std::setw(3) << std::setfill('0') << ++counter_ << "_" << pass->getArgument().str() << ".mlir";
    std::string path = dir_ + "/" + name.str();
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec) return;
    Operation *top = op;
    while (top->getParentOp()) top = top->getParentOp();
    printForReading(top, os);
  }

private:
  std::string dir_;
  int counter_ = 0;
  llvm::DenseMap<Operation *, OperationFingerPrint> before_;
};
} // namespace

static void addPhasePasses(PassManager &pm, Phase phase, const Recipe *recipe) {
  if (phase == Phase::Simplify) passes::buildSimplifyPipeline(pm);
  if (phase == Phase::Compress && recipe) buildCompressPipeline(pm, *recipe);
  if (phase == Phase::Lower) passes::buildLowerPipeline(pm);
}

LogicalResult runPhases(ModuleOp module, Phase from, Phase to, const IrPrinting &printing, std::string &error,
                        const Recipe *recipe, std::vector<PhaseStat> *stats) {
  MLIRContext *context = module.getContext();
  for (int p = int(from) + 1; p <= int(to); ++p) {
    Phase phase = Phase(p);
    PassManager pm(context, ModuleOp::getOperationName());
    if (phase == Phase::Package) break; // not IR: see writeArtifactFile
    auto started = std::chrono::steady_clock::now();
    if (phase == Phase::Compress && recipe && failed(checkRecipeMatches(module, *recipe, error))) return failure();
    addPhasePasses(pm, phase, recipe);
    if (printing.afterAll || !printing.afterPasses.empty()) {
      context->disableMultithreading();
      auto after = printing.afterPasses;
      bool all = printing.afterAll;
      OpPrintingFlags flags;
      flags.elideLargeElementsAttrs(16);
      flags.elideLargeResourceString(64);
      flags.enableDebugInfo(true, false);
      pm.enableIRPrinting(
          [](Pass *, Operation *) { return false; },
          [all, after](Pass *pass, Operation *) {
            return all || llvm::is_contained(after, pass->getArgument().str());
          },
          /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false, /*printAfterOnlyOnFailure=*/false,
          llvm::errs(), flags);
    }
    if (!printing.dumpDir.empty()) {
      std::error_code ec = llvm::sys::fs::create_directories(printing.dumpDir);
      if (ec) {
        error = "cannot create dump directory " + printing.dumpDir + ": " + ec.message();
        return failure();
      }
      context->disableMultithreading();
      pm.addInstrumentation(std::make_unique<DumpDirInstrumentation>(printing.dumpDir));
    }
    if (failed(pm.run(module))) {
      error = std::string("phase '") + phaseName(phase) + "' failed (see the diagnostics above)";
      return failure();
    }
    module->setAttr("lathe.phase", StringAttr::get(context, phaseName(phase)));
    if (stats)
      stats->push_back({phase, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                        takePhasePeakRss()});
  }
  return success();
}

std::string describePipeline(MLIRContext *context, Phase from, Phase to, const Recipe *recipe) {
  std::string out;
  llvm::raw_string_ostream os(out);
  for (int p = int(from) + 1; p <= int(to); ++p) {
    Phase phase = Phase(p);
    os << (out.empty() ? "" : "; ") << phaseName(phase);
    if (phase == Phase::Package || phase == Phase::Import) continue;
    if (phase == Phase::Compress) {
      if (!recipe) {
        os << " (no recipe)";
        continue;
      }
      os << " (recipe " << (recipe->name.empty() ? recipe->path : recipe->name) << ")";
    }
    PassManager pm(context, ModuleOp::getOperationName());
    addPhasePasses(pm, phase, recipe);
    os << ": ";
    pm.printAsTextualPipeline(os);
  }
  return out;
}

LogicalResult writeArtifactFile(ModuleOp module, const std::string &pipeline, const std::string &path,
                                std::string &error) {
  auto lowered = compiler::lowerToArtifact(module, pipeline, error);
  if (!lowered) return failure();
  error = artifact::writeArtifact(lowered->spec, path);
  return success(error.empty());
}

LogicalResult writeModule(ModuleOp module, const std::string &path, std::string &error) {
  bool bytecode = endsWith(path, ".mlirbc");
  if (!bytecode && !endsWith(path, ".mlir")) {
    error = "output " + path + " must end in .mlir (text, weights elided) or .mlirbc (bytecode with weights)";
    return failure();
  }
  llvm::Error err = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) -> llvm::Error {
    if (bytecode) {
      BytecodeWriterConfig config("lathe");
      if (failed(writeBytecodeToFile(module, os, config)))
        return llvm::createStringError(std::errc::io_error, "bytecode writer failed");
    } else {
      printForReading(module, os);
    }
    return llvm::Error::success();
  });
  if (err) {
    error = "cannot write " + path + ": " + llvm::toString(std::move(err));
    return failure();
  }
  return success();
}

} // namespace lathe::pipeline
