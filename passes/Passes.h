// Declarations of every Lathe pass (generated from Passes.td) and the
// pipeline builders.
#pragma once

#include "dialects/lathe/LatheDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace lathe::passes {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The `simplify` phase: folding, cleanup and fusions, then remarks on what
/// stayed unfused.
void buildSimplifyPipeline(mlir::OpPassManager &pm);

/// The `lower` phase: checks that the module maps onto runtime kernels.
void buildLowerPipeline(mlir::OpPassManager &pm);

/// Registers passes and the named pipelines (`lathe-simplify`) for lathe-opt.
void registerAllLathePasses();

} // namespace lathe::passes
