// Dequantization of ggml block formats to float32, bit-exact with ggml's
// dequantize_row_* and gguf-py's quants.py (each value is computed with the
// same float32 operations in the same order; build without FMA contraction).
//
// The block structs, with their layouts, are in GgmlDequant.cpp next to the
// code that reads them.
#pragma once

#include "compiler/import/gguf/GgmlType.h"
#include "compiler/import/gguf/GgufReader.h"
#include "lathe/Status.h"

#include <cstdint>
#include <span>
#include <vector>

namespace lathe::gguf {

/// IEEE half to float, exact for every finite value, subnormals and infinities included.
float halfToFloat(uint16_t bits);
/// bfloat16 to float (exact: the high half of a float32).
float bfloat16ToFloat(uint16_t bits);

/// Whether dequantize() handles this type.
bool canDequantize(uint32_t typeId);

/// Dequantizes `elementCount` values (a multiple of the type's block size)
/// from `source`, which must hold exactly elementCount / blockSize blocks.
/// Unsupported types are named ("IQ2_XS (17)") in the error.
Status dequantize(uint32_t typeId, std::span<const uint8_t> source, uint64_t elementCount, float *destination);

/// A whole tensor, row-major in the tensor's shape().
Expected<std::vector<float>> dequantizeTensor(const GgufTensor &tensor);

} // namespace lathe::gguf
