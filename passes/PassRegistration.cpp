#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

namespace lathe::passes {

void buildSimplifyPipeline(mlir::OpPassManager &pm) {
  auto &fn = pm.nest<mlir::func::FuncOp>();
  auto cleanup = [&fn] {
    fn.addPass(createEliminateNoops());
    fn.addPass(createFoldConstants());
    fn.addPass(createFoldShapes());
    fn.addPass(createFoldConstants());
    fn.addPass(mlir::createCSEPass());
    fn.addPass(createFoldChains());
    fn.addPass(createEliminateNoops());
  };
  cleanup();
  fn.addPass(createFuseLinear());
  fn.addPass(createFuseNorms());
  fn.addPass(createFuseActivations());
  fn.addPass(createFuseRotary());
  fn.addPass(createFuseAttention());
  cleanup();
  fn.addPass(createExplainUnfused());
}

void buildLowerPipeline(mlir::OpPassManager &pm) {
  pm.nest<mlir::func::FuncOp>().addPass(createVerifyLowerable());
}

void registerAllLathePasses() {
  registerLathePasses();
  mlir::PassPipelineRegistration<>("lathe-simplify",
                                   "The simplify phase: folding, cleanup, fusions, remarks",
                                   buildSimplifyPipeline);
}

} // namespace lathe::passes
