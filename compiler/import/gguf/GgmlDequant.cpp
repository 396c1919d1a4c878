#include "compiler/import/gguf/GgmlDequant.h"

#include <bit>
#include <cstring>

namespace lathe::gguf {

namespace {

constexpr int kQK = 32;    // elements per block of the legacy quants
constexpr int kQK_K = 256; // elements per super-block of the K-quants
constexpr int kScaleBytesK = 12;

using half = uint16_t; // stored IEEE fp16 bits

// ---- Legacy quants: 32 elements per block ---------------------------------

// Q4_0: y[i] = d * (q[i] - 8). Element j < 16 is the low nibble of qs[j],
// element j >= 16 the high nibble of qs[j - 16].
struct BlockQ4_0 {
  half d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: y[i] = d * q[i] + m, nibbles as in Q4_0.
struct BlockQ4_1 {
  half d;
  half m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0: y[i] = d * (q[i] - 16); the low 4 bits as in Q4_0, bit 4 of element
// j is bit j of the little-endian qh.
struct BlockQ5_0 {
  half d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: y[i] = d * q[i] + m, bits as in Q5_0.
struct BlockQ5_1 {
  half d;
  half m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q8_0: y[i] = d * qs[i].
struct BlockQ8_0 {
  half d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

// ---- K-quants: 256 elements per super-block -------------------------------

// Q2_K: 16 sub-blocks of 16. scales[s] holds the 4-bit scale (low nibble)
// and 4-bit min (high nibble) of sub-block s: y = d*sc*q - dmin*m.
// Element j: half h = j / 128, shift s = (j % 128) / 32, lane l = j % 32,
// q = (qs[32h + l] >> 2s) & 3.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  half d;
  half dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (stored + 32):
// low 4 bits of scale k are the low nibble of scales[k] (k < 8) or the high
// nibble of scales[k - 8]; the high 2 bits are bits 2(k/4).. of scales[8 + k%4].
// The low 2 bits of element j are laid out as in Q2_K; the third bit is bit
// j / 32 of hmask[j % 32], and a *clear* bit subtracts 4: y = d*sc*(q - 4*!h).
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  half d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes
// (see scaleMinK4): y = (d*sc) * q - (dmin*m). Element j: sub-block
// s = j / 32, q = (qs[32(s/2) + j%32] >> 4(s%2)) & 15.
struct BlockQ4_K {
  half d;
  half dmin;
  uint8_t scales[kScaleBytesK];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: Q4_K plus a fifth bit: bit j / 32 of qh[j % 32].
struct BlockQ5_K {
  half d;
  half dmin;
  uint8_t scales[kScaleBytesK];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 16 sub-blocks of 16 with int8 scales: y = (d*scales[j/16]) * (q - 32).
// Element j: half h = j / 128, r = j % 128; the low 4 bits are nibble r / 64
// of ql[64h + r%64], the high 2 bits are bits 2(r/32).. of qh[32h + r%32].
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  half d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// The 12 scale bytes of Q4_K/Q5_K (ggml's get_scale_min_k4); for sub-block s:
//   bytes 0-3:  sc[0..3] in bits 0-5, bits 4-5 of sc[4..7] in bits 6-7
//   bytes 4-7:  m[0..3]  in bits 0-5, bits 4-5 of m[4..7]  in bits 6-7
//   bytes 8-11: low nibble = bits 0-3 of sc[4..7], high nibble = bits 0-3 of m[4..7]
void scaleMinK4(int s, const uint8_t *q, uint8_t &scale, uint8_t &min) {
  if (s < 4) {
    scale = q[s] & 63;
    min = q[s + 4] & 63;
  } else {
    scale = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
    min = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

template <class Block> Block loadBlock(const uint8_t *bytes) {
  Block block; // copied: the data section need not be aligned for the struct
  std::memcpy(&block, bytes, sizeof(Block));
  return block;
}

void dequantQ4_0(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ4_0>(bytes);
  float d = halfToFloat(b.d);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * float(int(b.qs[j] & 0xF) - 8);
    y[j + kQK / 2] = d * float(int(b.qs[j] >> 4) - 8);
  }
}

void dequantQ4_1(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ4_1>(bytes);
  float d = halfToFloat(b.d), m = halfToFloat(b.m);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * float(b.qs[j] & 0xF) + m;
    y[j + kQK / 2] = d * float(b.qs[j] >> 4) + m;
  }
}

uint32_t littleEndian32(const uint8_t *p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

void dequantQ5_0(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ5_0>(bytes);
  float d = halfToFloat(b.d);
  uint32_t qh = littleEndian32(b.qh);
  for (int j = 0; j < kQK / 2; ++j) {
    int low = (b.qs[j] & 0xF) | int((qh >> j) & 1) << 4;
    int high = (b.qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
    y[j] = d * float(low - 16);
    y[j + kQK / 2] = d * float(high - 16);
  }
}

void dequantQ5_1(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ5_1>(bytes);
  float d = halfToFloat(b.d), m = halfToFloat(b.m);
  uint32_t qh = littleEndian32(b.qh);
  for (int j = 0; j < kQK / 2; ++j) {
    int low = (b.qs[j] & 0xF) | int((qh >> j) & 1) << 4;
    int high = (b.qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
    y[j] = d * float(low) + m;
    y[j + kQK / 2] = d * float(high) + m;
  }
}

void dequantQ8_0(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ8_0>(bytes);
  float d = halfToFloat(b.d);
  for (int j = 0; j < kQK; ++j)
    y[j] = d * float(b.qs[j]);
}

void dequantQ2_K(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ2_K>(bytes);
  float d = halfToFloat(b.d), dmin = halfToFloat(b.dmin);
  for (int j = 0; j < kQK_K; ++j) {
    int h = j / 128, shift = (j % 128) / 32, lane = j % 32;
    int q = (b.qs[32 * h + lane] >> (2 * shift)) & 3;
    uint8_t sm = b.scales[j / 16];
    float scale = d * float(sm & 0xF), min = dmin * float(sm >> 4);
    y[j] = scale * float(q) - min;
  }
}

void dequantQ3_K(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ3_K>(bytes);
  float d = halfToFloat(b.d);
  float scales[16];
  for (int k = 0; k < 16; ++k) {
    int low = k < 8 ? (b.scales[k] & 0xF) : (b.scales[k - 8] >> 4);
    int high = (b.scales[8 + k % 4] >> (2 * (k / 4))) & 3;
    scales[k] = d * float((low | high << 4) - 32);
  }
  for (int j = 0; j < kQK_K; ++j) {
    int h = j / 128, shift = (j % 128) / 32, lane = j % 32;
    int low = (b.qs[32 * h + lane] >> (2 * shift)) & 3;
    int highBit = (b.hmask[lane] >> (j / 32)) & 1;
    y[j] = scales[j / 16] * float(low - (highBit ? 0 : 4));
  }
}

void dequantQ4_K(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ4_K>(bytes);
  float d = halfToFloat(b.d), dmin = halfToFloat(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    scaleMinK4(s, b.scales, sc, m);
    float scale = d * float(sc), min = dmin * float(m);
    const uint8_t *qs = b.qs + 32 * (s / 2);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l)
      y[32 * s + l] = scale * float((qs[l] >> shift) & 0xF) - min;
  }
}

void dequantQ5_K(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ5_K>(bytes);
  float d = halfToFloat(b.d), dmin = halfToFloat(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    scaleMinK4(s, b.scales, sc, m);
    float scale = d * float(sc), min = dmin * float(m);
    const uint8_t *qs = b.qs + 32 * (s / 2);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      int q = ((qs[l] >> shift) & 0xF) | ((b.qh[l] >> s) & 1) << 4;
      y[32 * s + l] = scale * float(q) - min;
    }
  }
}

void dequantQ6_K(const uint8_t *bytes, float *y) {
  auto b = loadBlock<BlockQ6_K>(bytes);
  float d = halfToFloat(b.d);
  for (int j = 0; j < kQK_K; ++j) {
    int h = j / 128, r = j % 128;
    int low = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xF;
    int high = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    float scale = d * float(b.scales[j / 16]);
    y[j] = scale * float((low | high << 4) - 32);
  }
}

using BlockFunction = void (*)(const uint8_t *, float *);

BlockFunction blockFunction(uint32_t typeId) {
  switch (GgmlType(typeId)) {
  case GgmlType::Q4_0: return dequantQ4_0;
  case GgmlType::Q4_1: return dequantQ4_1;
  case GgmlType::Q5_0: return dequantQ5_0;
  case GgmlType::Q5_1: return dequantQ5_1;
  case GgmlType::Q8_0: return dequantQ8_0;
  case GgmlType::Q2_K: return dequantQ2_K;
  case GgmlType::Q3_K: return dequantQ3_K;
  case GgmlType::Q4_K: return dequantQ4_K;
  case GgmlType::Q5_K: return dequantQ5_K;
  case GgmlType::Q6_K: return dequantQ6_K;
  default: return nullptr;
  }
}

} // namespace

float halfToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1F;
  uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0) // zero or subnormal: mantissa * 2^-24, exact in float32
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(float(mantissa) * 0x1p-24f));
  if (exponent == 31) // infinity or NaN (payload kept)
    return std::bit_cast<float>(sign | 0x7F800000u | mantissa << 13);
  return std::bit_cast<float>(sign | (exponent + 127 - 15) << 23 | mantissa << 13);
}

float bfloat16ToFloat(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

bool canDequantize(uint32_t typeId) {
  GgmlType type = GgmlType(typeId);
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 || blockFunction(typeId) != nullptr;
}

Status dequantize(uint32_t typeId, std::span<const uint8_t> source, uint64_t elementCount, float *destination) {
  auto traits = ggmlTypeTraits(typeId);
  if (!traits || !canDequantize(typeId))
    return Status::error("cannot dequantize " + ggmlTypeDescription(typeId) +
                         ": supported are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K");
  if (elementCount % traits->blockSize != 0)
    return Status::error(std::string("cannot dequantize ") + traits->name + ": " + std::to_string(elementCount) +
                         " elements is not a multiple of the block size " + std::to_string(traits->blockSize));
  uint64_t blocks = elementCount / traits->blockSize;
  if (source.size() / traits->typeSize != blocks || source.size() % traits->typeSize != 0)
    return Status::error(std::string("cannot dequantize ") + traits->name + ": " + std::to_string(elementCount) +
                         " elements need " + std::to_string(blocks * traits->typeSize) + " bytes, got " +
                         std::to_string(source.size()));
  const uint8_t *bytes = source.data();
  switch (GgmlType(typeId)) {
  case GgmlType::F32:
    std::memcpy(destination, bytes, size_t(elementCount) * 4);
    return {};
  case GgmlType::F16:
  case GgmlType::BF16: {
    bool isHalf = GgmlType(typeId) == GgmlType::F16;
    for (uint64_t i = 0; i < elementCount; ++i) {
      uint16_t bits;
      std::memcpy(&bits, bytes + 2 * i, 2);
      destination[i] = isHalf ? halfToFloat(bits) : bfloat16ToFloat(bits);
    }
    return {};
  }
  default:
    break;
  }
  BlockFunction function = blockFunction(typeId);
  for (uint64_t block = 0; block < blocks; ++block)
    function(bytes + block * traits->typeSize, destination + block * traits->blockSize);
  return {};
}

Expected<std::vector<float>> dequantizeTensor(const GgufTensor &tensor) {
  if (!canDequantize(tensor.typeId))
    return Status::error("tensor '" + tensor.name + "': cannot dequantize " + ggmlTypeDescription(tensor.typeId) +
                         ": supported are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K");
  std::vector<float> values(size_t(tensor.elementCount));
  Status status = dequantize(tensor.typeId, tensor.bytes(), tensor.elementCount, values.data());
  if (!status.ok())
    return Status::error("tensor '" + tensor.name + "': " + status.message());
  return values;
}

} // namespace lathe::gguf
