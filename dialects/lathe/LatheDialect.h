// The lathe dialect: include this to use its ops. Only compiler code includes it;
// the runtime never sees MLIR.
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace lathe::ir {
/// Inferred result types may be less precise than the actual ones: folding
/// refines dynamic dimensions in place.
bool areCompatibleResultTypes(mlir::TypeRange inferred, mlir::TypeRange actual);
} // namespace lathe::ir

#include "dialects/lathe/LatheDialect.h.inc"

#define GET_OP_CLASSES
#include "dialects/lathe/LatheOps.h.inc"
