// Phases of a compile and the driver code that runs them: loading a model
// (ONNX import or MLIR text/bytecode), running phase pipelines with IR
// printing, and writing results atomically.
#pragma once

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include "compiler/pipeline/Recipe.h"

#include <optional>
#include <string>
#include <vector>

namespace lathe::pipeline {

/// Phases in order. `compress` runs the recipe's passes (nothing without a
/// recipe); calibrate comes with the calibration-driven methods. `package` is
/// not a pass pipeline: it writes the .lathe artifact.
enum class Phase { Import = 0, Simplify = 1, Compress = 2, Lower = 3, Package = 4 };
constexpr Phase kLastPhase = Phase::Package;
/// The last phase whose result is still IR (what -o x.mlir/.mlirbc can hold).
constexpr Phase kLastIrPhase = Phase::Lower;

std::optional<Phase> parsePhase(const std::string &name);
const char *phaseName(Phase phase);
std::string phaseNames(); // "import, simplify"

/// The phase a module has completed (module attribute lathe.phase).
std::optional<Phase> completedPhase(mlir::ModuleOp module);

struct IrPrinting {
  bool afterAll = false;
  std::vector<std::string> afterPasses; // pass arguments, e.g. lathe-fuse-attention
  std::string dumpDir;                  // numbered per-pass files, only when the IR changed
};

/// Loads .onnx (importing it), .mlir or .mlirbc. On failure returns null and
/// fills `error` (for ONNX, with every node problem listed).
struct LoadOptions {
  bool ggufNative = false; // keep GGUF Q8_0/Q4_0/Q4_1 linear weights in Lathe's int8/int4 formats
  bool ggufInt8Activations = false; // and quantize those layers' inputs to int8 per block of 32 at run time
};
mlir::OwningOpRef<mlir::ModuleOp> loadModel(mlir::MLIRContext &context, const std::string &path,
                                            std::string &error, const LoadOptions &options = {});

/// Wall time and peak memory of one phase (for the compile report).
struct PhaseStat {
  Phase phase;
  double seconds = 0;
  uint64_t peakRssBytes = 0; // the phase's own peak resident memory (takePhasePeakRss)
  const char *label = nullptr; // driver steps that are not phases ("calibrate"); null: the phase's name
};

/// The peak resident memory since the previous call (Linux: VmHWM, then reset
/// through /proc/self/clear_refs, so each phase reports its own peak, which
/// includes what earlier phases left resident); where that is unavailable, the
/// process's peak so far (getrusage).
uint64_t takePhasePeakRss();

/// Runs the phases after `from` up to and including `to`; `recipe` (may be
/// null) supplies the compress phase's passes.
mlir::LogicalResult runPhases(mlir::ModuleOp module, Phase from, Phase to, const IrPrinting &printing,
                              std::string &error, const Recipe *recipe = nullptr,
                              std::vector<PhaseStat> *stats = nullptr);

/// The textual pipeline of the phases after `from` up to `to`, recorded in artifacts.
std::string describePipeline(mlir::MLIRContext *context, Phase from, Phase to, const Recipe *recipe = nullptr);

/// Lowers a module that completed the `lower` phase and writes the artifact.
mlir::LogicalResult writeArtifactFile(mlir::ModuleOp module, const std::string &pipeline,
                                      const std::string &path, std::string &error);

/// Writes text (.mlir, weights elided, locations kept) or bytecode (.mlirbc,
/// with every resource) through a temporary file renamed into place.
mlir::LogicalResult writeModule(mlir::ModuleOp module, const std::string &path, std::string &error);

/// Prints IR for reading: weights elided, ONNX node names as locations.
void printForReading(mlir::Operation *op, llvm::raw_ostream &os);

/// Prints diagnostics as `<ONNX node>: remark|warning|error: message` while alive.
class DiagnosticPrinter {
public:
  explicit DiagnosticPrinter(mlir::MLIRContext &context, bool showRemarks = true);
  ~DiagnosticPrinter();
  int errors() const { return errors_; }

private:
  mlir::MLIRContext &context_;
  uint64_t id_;
  int errors_ = 0;
};

/// Registers the dialects Lathe's IR uses.
void registerDialects(mlir::MLIRContext &context);

} // namespace lathe::pipeline
