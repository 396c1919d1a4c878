// lathe-opt: runs any Lathe pass or pipeline on a .mlir/.mlirbc file with
// MLIR's own pipeline syntax, e.g. --pass-pipeline='builtin.module(func.func(lathe-fuse-attention))'.
#include "dialects/lathe/LatheDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<lathe::ir::LatheDialect, mlir::func::FuncDialect>();
  lathe::passes::registerAllLathePasses();
  mlir::registerCSEPass();
  mlir::registerCanonicalizerPass();
  mlir::registerSymbolDCEPass();
  return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, "Lathe optimizer driver\n", registry));
}
