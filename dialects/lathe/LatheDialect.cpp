#include "dialects/lathe/LatheDialect.h"

using namespace mlir;

#include "dialects/lathe/LatheDialect.cpp.inc"

namespace lathe::ir {

void LatheDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/lathe/LatheOps.cpp.inc"
      >();
}

Operation *LatheDialect::materializeConstant(OpBuilder &builder, Attribute value, Type type,
                                             Location loc) {
  auto elements = dyn_cast<ElementsAttr>(value);
  if (!elements || elements.getType() != type) return nullptr;
  return builder.create<ConstantOp>(loc, elements);
}

bool areCompatibleResultTypes(TypeRange inferred, TypeRange actual) {
  if (inferred.size() != actual.size()) return false;
  for (auto [a, b] : llvm::zip(inferred, actual)) {
    auto ta = dyn_cast<RankedTensorType>(a);
    auto tb = dyn_cast<RankedTensorType>(b);
    if (!ta || !tb) { if (a != b) return false; continue; }
    if (ta.getElementType() != tb.getElementType() || ta.getRank() != tb.getRank()) return false;
    for (auto [da, db] : llvm::zip(ta.getShape(), tb.getShape()))
      if (!ShapedType::isDynamic(da) && !ShapedType::isDynamic(db) && da != db) return false;
  }
  return true;
}

} // namespace lathe::ir
