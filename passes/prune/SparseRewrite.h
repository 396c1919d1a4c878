// Emitting lathe.sparse_linear for an N:M-pruned lathe.linear (shared by
// lathe-pack-sparse, f32 values, and lathe-quantize-weights, int4 values).
#pragma once

#include "passes/prune/NmPack.h"

#include "dialects/lathe/LatheDialect.h"

#include <string>

namespace lathe::passes {

/// Replaces `op` by a lathe.sparse_linear holding `packed` (int4 when `group`
/// > 0) with lathe.compression for the report (method "<prune method>-2:4 f32"
/// or "... int4-g128" + `methodSuffix`; `weightError` ≥ 0 overrides packed's).
mlir::LogicalResult emitSparseLinear(ir::LinearOp op, prune::Pattern p, const std::string &patternText,
                                     const prune::NmPacked &packed, int64_t group, mlir::DictionaryAttr sparsity,
                                     const std::string &methodSuffix = "", double weightError = -1);

/// The combined relative weight error of pruning then quantizing the kept
/// weights: √(e_prune² + (e_quant·‖W_pruned‖/‖W‖)²) (exact when the kept
/// weights were not moved, i.e. magnitude and Wanda).
double stackedWeightError(mlir::DictionaryAttr sparsity, double quantError);

} // namespace lathe::passes
