// ggml tensor element types as GGUF files number them (ggml.h's enum ggml_type),
// with the block geometry needed to size a tensor's data: a row of ne[0]
// elements is ne[0] / blockSize blocks of typeSize bytes each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lathe::gguf {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

struct GgmlTypeTraits {
  const char *name;
  uint32_t blockSize; // elements per block
  uint32_t typeSize;  // bytes per block
};

/// The traits of a type number a GGUF file may carry; nullopt for numbers
/// ggml does not define (4 and 5 were Q4_2/Q4_3, long removed).
std::optional<GgmlTypeTraits> ggmlTypeTraits(uint32_t typeId);

/// "Q4_K (12)", or "unknown ggml type 99" for numbers ggml does not define.
std::string ggmlTypeDescription(uint32_t typeId);

} // namespace lathe::gguf
