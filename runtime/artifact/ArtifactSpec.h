// The contract between the compiler and the runtime: what a .lathe artifact
// holds, as plain structs (no MLIR, no FlatBuffers types). The compiler's
// lowering fills an ArtifactSpec and calls writeArtifact(); the runtime's
// reader validates a file and exposes the same information.
//
// Kernel semantics are those of the lathe dialect ops (dialects/lathe/LatheOps.td):
// `op` is the op mnemonic ("linear", "attention", "add", "reshape", ...), the
// operands keep their order, attributes keep their names. Operands that are
// constants in the IR (weights, reshape targets, ...) are tensors with a weight.
#pragma once

#include "runtime/artifact/Vocabulary.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lathe::artifact {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

/// Size of one element in bytes (Bool is one byte).
size_t dtypeSize(DType dtype);
const char *dtypeName(DType dtype);

/// A dimension: static (value >= 0) or dynamic, named by a symbol. Dynamic
/// dims that are equal at run time share a symbol ("batch", "sequence"); a
/// dim the compiler could not relate to an input gets a unique symbol.
struct Dim {
  int64_t value = -1;
  std::string symbol;
  bool isStatic() const { return value >= 0; }
};

struct TensorSpec {
  std::string name; // ONNX value / node name; graph inputs and outputs keep their ONNX names
  DType dtype = DType::F32;
  std::vector<Dim> shape;
};

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

struct KernelSpec {
  std::string op;                       // lathe op mnemonic
  std::vector<int32_t> inputs;          // tensor indices, in operand order; -1 = absent optional operand
  std::vector<int32_t> outputs;         // tensor indices
  std::map<std::string, AttrValue> attrs;
  std::string source;                   // ONNX node name (for errors, reports, --dump)
  std::string weightFormat = "f32";     // key into the kernel table with (op, device)
};

/// A constant tensor's bytes (row-major, little-endian, dtypeSize per element).
struct WeightSpec {
  int32_t tensor = -1;
  const void *data = nullptr;
  uint64_t bytes = 0;
};

/// One row of the per-layer manifest `lathe inspect` prints.
struct LayerEntry {
  std::string source; // ONNX node
  std::string op;
  std::string weightFormat;
  uint64_t weightBytes = 0;
};

struct ArtifactSpec {
  std::string compilerVersion;
  std::string sourceModel;
  std::string pipeline;               // the passes/recipe that made it
  std::string isa = "baseline";       // minimum CPU instruction-set level required
  std::vector<int32_t> cudaArchs;     // empty: no CUDA requirement
  std::vector<TensorSpec> tensors;
  std::vector<int32_t> inputs;        // graph inputs, in order
  std::vector<int32_t> outputs;       // graph outputs, in order
  std::vector<KernelSpec> kernels;    // execution order (topological)
  std::vector<WeightSpec> weights;
  std::vector<LayerEntry> manifest;
  std::optional<Vocabulary> vocabulary; // the model's tokenizer, when its source carried one
};

/// Writes `spec` to `path` deterministically (same spec ⇒ same bytes) through
/// a temporary file renamed into place. Returns an empty string on success,
/// otherwise the error.
std::string writeArtifact(const ArtifactSpec &spec, const std::string &path);

} // namespace lathe::artifact
