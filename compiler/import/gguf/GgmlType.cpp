#include "compiler/import/gguf/GgmlType.h"

namespace lathe::gguf {

namespace {
constexpr uint32_t kQK_K = 256; // super-block size of the K-quants

struct TypeRow {
  uint32_t id;
  GgmlTypeTraits traits;
};

// Sizes as in ggml.c's type_traits (and gguf-py's GGML_QUANT_SIZES).
constexpr TypeRow kTypes[] = {
    {0, {"F32", 1, 4}},
    {1, {"F16", 1, 2}},
    {2, {"Q4_0", 32, 2 + 16}},
    {3, {"Q4_1", 32, 2 + 2 + 16}},
    {6, {"Q5_0", 32, 2 + 4 + 16}},
    {7, {"Q5_1", 32, 2 + 2 + 4 + 16}},
    {8, {"Q8_0", 32, 2 + 32}},
    {9, {"Q8_1", 32, 4 + 4 + 32}},
    {10, {"Q2_K", kQK_K, 2 + 2 + kQK_K / 16 + kQK_K / 4}},
    {11, {"Q3_K", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + 12}},
    {12, {"Q4_K", kQK_K, 2 + 2 + kQK_K / 2 + 12}},
    {13, {"Q5_K", kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 8 + 12}},
    {14, {"Q6_K", kQK_K, 2 + kQK_K / 2 + kQK_K / 4 + kQK_K / 16}},
    {15, {"Q8_K", kQK_K, 4 + kQK_K + kQK_K / 8}},
    {16, {"IQ2_XXS", kQK_K, 2 + kQK_K / 4}},
    {17, {"IQ2_XS", kQK_K, 2 + kQK_K / 4 + kQK_K / 32}},
    {18, {"IQ3_XXS", kQK_K, 2 + kQK_K / 4 + kQK_K / 8}},
    {19, {"IQ1_S", kQK_K, 2 + kQK_K / 8 + kQK_K / 16}},
    {20, {"IQ4_NL", 32, 2 + 16}},
    {21, {"IQ3_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + kQK_K / 32 + 4}},
    {22, {"IQ2_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 16}},
    {23, {"IQ4_XS", kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 64}},
    {24, {"I8", 1, 1}},
    {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},
    {27, {"I64", 1, 8}},
    {28, {"F64", 1, 8}},
    {29, {"IQ1_M", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32}},
    {30, {"BF16", 1, 2}},
    {34, {"TQ1_0", kQK_K, 2 + 4 * 13}},
    {35, {"TQ2_0", kQK_K, 2 + 64}},
    {39, {"MXFP4", 32, 1 + 16}},
};
} // namespace

std::optional<GgmlTypeTraits> ggmlTypeTraits(uint32_t typeId) {
  for (const TypeRow &row : kTypes)
    if (row.id == typeId)
      return row.traits;
  return std::nullopt;
}

std::string ggmlTypeDescription(uint32_t typeId) {
  if (auto traits = ggmlTypeTraits(typeId))
    return std::string(traits->name) + " (" + std::to_string(typeId) + ")";
  return "unknown ggml type " + std::to_string(typeId);
}

} // namespace lathe::gguf
