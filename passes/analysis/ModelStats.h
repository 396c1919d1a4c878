// What `lathe inspect` prints for a module: op counts, parameters, weight
// bytes by dtype, FLOPs at a given batch and sequence length.
#pragma once

#include "mlir/IR/BuiltinOps.h"

#include <cstdint>
#include <map>
#include <string>

namespace lathe::analysis {

struct ModelStats {
  std::map<std::string, int64_t> opCounts;           // by op name, constants excluded
  int64_t constants = 0;
  int64_t parameters = 0;                            // elements of floating-point constants
  std::map<std::string, int64_t> weightBytesByDtype; // all constants
  double flops = 0;                                  // multiply-add = 2
  std::map<std::string, double> flopsByOp;
  int64_t opsWithUnknownShape = 0;                   // ops whose FLOPs could not be counted
};

/// Counts on `module` itself; FLOPs on a copy whose dynamic input dims are
/// bound (dim 0 = batch, other dynamic dims = seq) and whose shapes are folded.
ModelStats computeStats(mlir::ModuleOp module, int64_t batch, int64_t seq);

} // namespace lathe::analysis
