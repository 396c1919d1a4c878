// Reading and validating a .lathe file. Everything is checked before use:
// preamble, version, checksum, the FlatBuffers verifier, every offset and
// size, every tensor index, each kernel's operand dtypes and ranks against
// its op, and every weight's size against dtype x shape. Weights are used in
// place from the read-only mapping.
#pragma once

#include "runtime/artifact/ArtifactSpec.h"

#include <memory>
#include <string>

namespace lathe::artifact {

struct LoadedArtifact {
  ArtifactSpec spec;                     // WeightSpec::data points into `mapping`
  uint16_t formatMajor = 0;
  uint16_t formatMinor = 0;
  uint64_t fileBytes = 0;
  std::shared_ptr<const void> mapping;   // keeps the file mapped
  std::vector<int32_t> weightOfTensor;   // tensor index -> index in spec.weights, or -1
};

/// Returns an empty string on success, otherwise the error (naming the file).
std::string readArtifact(const std::string &path, LoadedArtifact &out);

/// Structural checks shared by the writer and the reader: tensor indices in
/// range, each kernel's arity, operand dtypes and ranks consistent with its op,
/// weights sized exactly dtype x shape. Returns an empty string when valid.
std::string validateSpec(const ArtifactSpec &spec);

/// Parses a dtype name ("f32", "i64", ...). Returns false for an unknown name.
bool parseDType(const std::string &name, DType &out);

} // namespace lathe::artifact
