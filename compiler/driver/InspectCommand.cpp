// lathe inspect: per phase, op counts by type, parameters, weight bytes by
// dtype and FLOPs at a given batch and sequence length.
#include "compiler/driver/Commands.h"
#include "compiler/pipeline/Pipeline.h"
#include "passes/analysis/ModelStats.h"
#include "runtime/tools/Commands.h"

#include "mlir/IR/MLIRContext.h"

#include <iomanip>
#include <iostream>
#include <sstream>

namespace lathe::driver {
namespace {

std::string human(double v, const char *unit) {
  const char *prefixes[] = {"", "K", "M", "G", "T"};
  int i = 0;
  while (v >= 1000 && i < 4) { v /= 1000; ++i; }
  std::ostringstream os;
  os << std::fixed << std::setprecision(i ? 2 : 0) << v << " " << prefixes[i] << unit;
  return os.str();
}

void printTable(const std::string &phase, const analysis::ModelStats &s, int64_t batch, int64_t seq) {
  std::cout << "== phase: " << phase << " ==\n";
  std::cout << "  parameters: " << s.parameters << " (" << human(double(s.parameters), "") << ")\n";
  std::cout << "  weight bytes by dtype:\n";
  for (const auto &[dtype, bytes] : s.weightBytesByDtype)
    std::cout << "    " << std::left << std::setw(8) << dtype << std::right << std::setw(14) << bytes << "  ("
              << human(double(bytes), "B") << ")\n";
  std::cout << "  FLOPs at batch " << batch << ", seq " << seq << ": " << human(s.flops, "FLOP");
  if (s.opsWithUnknownShape) std::cout << "  (" << s.opsWithUnknownShape << " ops with unresolved shapes not counted)";
  std::cout << "\n";
  std::cout << "  " << std::left << std::setw(24) << "op" << std::right << std::setw(7) << "count" << std::setw(16)
            << "FLOPs" << "\n";
  for (const auto &[op, count] : s.opCounts) {
    auto it = s.flopsByOp.find(op);
    std::cout << "  " << std::left << std::setw(24) << op << std::right << std::setw(7) << count << std::setw(16)
              << (it == s.flopsByOp.end() ? std::string("-") : human(it->second, "")) << "\n";
  }
  std::cout << "  " << std::left << std::setw(24) << "(constants)" << std::right << std::setw(7) << s.constants << "\n";
}

} // namespace

int runInspect(const InspectOptions &o) {
  if (o.input.size() > 6 && o.input.compare(o.input.size() - 6, 6, ".lathe") == 0)
    return tools::inspectArtifactCommand(o.input);
  mlir::MLIRContext context;
  pipeline::registerDialects(context);
  std::string error;
  auto module = pipeline::loadModel(context, o.input, error);
  if (!module) {
    std::cerr << "error: " << error << "\n";
    return 1;
  }
  std::cout << o.input << "\n";
  auto phase = pipeline::completedPhase(*module).value_or(pipeline::Phase::Import);
  // The unfused-op remarks belong to `compile`; inspect shows errors only.
  pipeline::DiagnosticPrinter diagnostics(context, /*showRemarks=*/false);
  printTable(pipeline::phaseName(phase), analysis::computeStats(*module, o.batch, o.seq), o.batch, o.seq);
  for (int p = int(phase) + 1; p <= int(pipeline::kLastIrPhase); ++p) {
    if (mlir::failed(pipeline::runPhases(*module, pipeline::Phase(p - 1), pipeline::Phase(p), {}, error))) {
      std::cerr << "error: " << error << "\n";
      return 1;
    }
    printTable(pipeline::phaseName(pipeline::Phase(p)), analysis::computeStats(*module, o.batch, o.seq), o.batch, o.seq);
  }
  return 0;
}

} // namespace lathe::driver
