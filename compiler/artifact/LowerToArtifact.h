// Lowering: a simplified lathe module → the flat kernel program of an
// artifact (runtime/artifact/ArtifactSpec.h). Tensors get dtypes and shapes
// whose dynamic dims are named after the graph-input dims they equal
// ("batch", "sequence"); constants become weights referenced in place.
#pragma once

#include "runtime/artifact/ArtifactSpec.h"

#include "mlir/IR/BuiltinOps.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace lathe::compiler {

/// The spec plus the storage its weight pointers refer to (dense constants
/// are re-encoded; dense_resource blobs are referenced where they live, so the
/// module must outlive the spec).
struct LoweredArtifact {
  artifact::ArtifactSpec spec;
  std::deque<std::vector<char>> storage;
};

/// Fails with a message naming the op/node that cannot be lowered.
std::unique_ptr<LoweredArtifact> lowerToArtifact(mlir::ModuleOp module, const std::string &pipeline,
                                                 std::string &error);

} // namespace lathe::compiler
