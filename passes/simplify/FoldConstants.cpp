// Folding to a fixed point with type refinement in between: folding a shape
// makes a reshape's result static, which makes its users foldable, and so on.
#include "passes/Passes.h"
#include "passes/simplify/SimplifyUtils.h"

#include "mlir/IR/OperationSupport.h"

namespace lathe::passes {
#define GEN_PASS_DEF_FOLDCONSTANTS
#include "passes/Passes.h.inc"

namespace {
struct FoldConstantsPass : impl::FoldConstantsBase<FoldConstantsPass> {
  void runOnOperation() override {
    mlir::func::FuncOp func = getOperation();
    for (int round = 0; round < 8; ++round) {
      mlir::OperationFingerPrint before(func);
      refineTypes(func);
      (void)foldAndClean(func);
      if (mlir::OperationFingerPrint(func) == before) break;
    }
  }
};
} // namespace
} // namespace lathe::passes
