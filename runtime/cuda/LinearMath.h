// Per-thread math of the CUDA linear kernels (LinearKernels.cu), compiled for
// the device by nvcc and for the host by g++, so the unit tests
// (test/unit/CudaLinearMathTests.cpp) run the kernels' real index arithmetic,
// decoding and summation order on machines without a GPU and compare them
// with the CPU kernels.
//
// Decode-fused GEMV (a few activation rows): one warp computes R consecutive
// output rows. A row of the compact weight is cut into "chunks", each one
// 16-byte load where the format allows it (int8: 16 weights, int4: one
// 32-weight block, bf16/fp16: 8 weights; int3: one 12-byte block as three 4-byte
// words; N:M: one aligned 32-column block, 16 kept values). Lane `lane` takes
// chunks lane, lane + 32, lane + 64, ... (a warp reads 512 contiguous bytes per
// step: coalesced). Codes become floats through the exponent trick
// (0x4B000000 | byte is 2^23 + byte), one byte permute per weight instead of
// an integer-to-float conversion (a quarter-rate instruction). Products are
// accumulated in fp32 as in the CPU's GEMV: d·Σx·q + min·Σx per chunk, every
// accumulation an explicit fmaf so nvcc cannot contract differently from the
// host. The lane partials are then summed by a xor-butterfly over the warp
// (reduceLanes emulates it on the host, operand order included).
#pragma once

#include "runtime/core/HalfFloat.h"

#include <cstdint>

// Loop unrolling for nvcc; g++ unrolls on its own (and warns on the pragma).
#if defined(__CUDACC__)
#define LATHE_UNROLL _Pragma("unroll")
#else
#define LATHE_UNROLL
#endif

namespace lathe::cuda::math {

// ------------------------------------------------------------------ bits

using numeric::bf16ToFloat;
using numeric::halfToFloat;
LATHE_HD float bitsToFloat(uint32_t b) { return numeric::bitsFloat(b); }

/// Fused multiply-add, one rounding, on both sides (glibc's fmaf is exact too).
LATHE_HD float fma32(float a, float b, float c) {
#if defined(LATHE_DEVICE_BRANCH)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}


/// CUDA's __byte_perm(x, y, s) for selectors whose nibbles are below 8:
/// result byte i = byte (s >> 4i & 7) of the 8 bytes y:x (x bytes 0–3, y bytes 4–7).
LATHE_HD uint32_t bytePerm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(LATHE_DEVICE_BRANCH)
  return __byte_perm(x, y, s);
#else
  const uint64_t both = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t(both >> (8 * ((s >> (4 * i)) & 7)) & 0xFF) << (8 * i);
  return r;
#endif
}

/// Byte b (0..3) of `codes` minus `offset`, as an exact float: the byte is placed in
/// the low mantissa of 2^23 (0x4B0000bb), then 2^23 + offset is subtracted.
LATHE_HD float byteToFloat(uint32_t codes, int b, float offset) {
  return bitsToFloat(bytePerm(codes, 0x4B000000u, 0x7540u | uint32_t(b))) - (8388608.0f + offset);
}

// ------------------------------------------------------------------ formats

enum Format : int { kInt8 = 0, kInt4 = 1, kInt3 = 2, kBf16 = 3, kNmF32 = 4, kNmInt4 = 5, kF16 = 6 };

/// 16-bit float storage (bf16, IEEE half): the values themselves, no scales or groups.
template <int F> constexpr bool kFloat16 = F == kBf16 || F == kF16;

/// Weights per chunk (N:M: original columns per chunk) and 32-bit words per chunk (per row).
template <int F> struct Chunk;
template <> struct Chunk<kInt8> { static constexpr int weights = 16, words = 4; static constexpr bool hasMin = false; };
template <> struct Chunk<kInt4> { static constexpr int weights = 32, words = 4; static constexpr bool hasMin = true; };
template <> struct Chunk<kInt3> { static constexpr int weights = 32, words = 3; static constexpr bool hasMin = true; };
template <> struct Chunk<kBf16> { static constexpr int weights = 8, words = 4; static constexpr bool hasMin = false; };
template <> struct Chunk<kF16> { static constexpr int weights = 8, words = 4; static constexpr bool hasMin = false; };

/// Everything a linear kernel reads (device pointers on the device, host
/// pointers in the tests). Compact formats:
///   int8  q i8 [n, k]; scales f16 [n, groups]              w = d·q
///   int4  q u8 [n, k/2] (ggml: block byte t = weight t low nibble, t+16 high)
///         scales, mins? f16 [n, groups]                     w = d·q + min  (no mins: min = -8·d)
///   int3  q u8 [n, k/32·12] (bytes 0–7 low two bits of weights j, j+8, j+16, j+24
///         at bits 0,2,4,6 of byte j; bytes 8–11 high bit t at bit t)  w = d·q + min (-4·d)
///   bf16  q bf16 [n, k]
///   fp16  q f16 (IEEE half) [n, k]
///   nm-f32  q = values f32 [n, k/2], indices u8 (2:4: 2 bits at 2·(t%4) of byte t/4;
///           4:8: nibble t%2 of byte t/2); kept value t sits at column (t/N)·M + index(t)
///   nm-int4 q = codes u8 [n, k/4] (value t: nibble t%2 of byte t/2), scales f16
///           [n, groups] (group in original columns): w = d·(q - 8)
struct LinearArgs {
  const uint8_t *q = nullptr;
  const uint8_t *indices = nullptr;
  const uint16_t *scales = nullptr, *mins = nullptr;
  const float *bias = nullptr;
  const float *x = nullptr; // [m, ldx]
  float *y = nullptr;       // [m, ldy]
  int64_t ldx = 0, ldy = 0;
  int64_t m = 0, n = 0, k = 0, group = 1, groups = 1;
  int64_t rowBytes = 0; // bytes of one weight row (of q)
  int pattern = 4;      // N:M: M (4 or 8)
  int xAligned = 0;     // x rows are 16-byte aligned (float4 loads)
};

// ------------------------------------------------------------------ tensor-core GEMM inputs

/// An activation as the 16-bit operand of a tensor-core GEMM (LATHE_CUDA_GEMM=tensor):
/// bf16 or IEEE half, rounded to nearest even; beyond half's range it saturates to
/// ±65504 (rather than becoming ±inf), NaN stays NaN.
LATHE_HD uint16_t activationTo16(float v, bool bf16) {
  if (bf16) return numeric::floatToBf16(v);
  v = v > 65504.0f ? 65504.0f : (v < -65504.0f ? -65504.0f : v);
  return numeric::floatToHalf(v);
}

// ------------------------------------------------------------------ int8 activations

/// act_block 32 (int8 activations, the llama.cpp way): one block x[0, size), size <= 32,
/// quantized by the CPU's rule (quantizeActRow: d = max|x|/127, q = rint(x·(1/d)) clamped
/// to ±127; a block with an infinity or NaN gets d = NaN) and widened back, out[i] = d·q[i],
/// as the CPU's widenActRows writes it. The device then multiplies these with the weights
/// in fp32: the model the CPU computes, to float rounding (the CPU's decode sums
/// d_w·d_x·Σq_w·q_x in integers).
LATHE_HD void widenActBlock(const float *x, int64_t size, float *out) {
  float amax = 0.0f;
  bool nan = false;
  for (int64_t i = 0; i < size; ++i) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    amax = a > amax ? a : amax; // NaN compares false: found by `nan`
    nan |= x[i] != x[i];
  }
  const bool finite = !nan && amax <= 3.40282347e38f;
  const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
  const float d = finite ? db : __builtin_nanf("");
  for (int64_t i = 0; i < size; ++i) {
#if defined(LATHE_DEVICE_BRANCH)
    float v = finite ? rintf(__fmul_rn(x[i], id)) : 0.0f;
#else
    float v = finite ? __builtin_rintf(x[i] * id) : 0.0f;
#endif
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    out[i] = d * float(int32_t(v)); // through an integer, as the CPU's int8 codes (no -0)
  }
}

// ------------------------------------------------------------------ W8A8

/// W8A8 activation quantization (runtime/cpu/Int8Gemm.h, the same in every CPU table):
/// the multiplier of row r's values and its rowScale. Static per tensor (tensorScale > 0):
/// 1/s and s; static per channel: the per-channel inverse scales multiply instead (the
/// caller's), rowScale s; dynamic: 127/max|x| and max|x|/127 (a zero row: 0 and 0).
LATHE_HD float w8a8RowInverse(float amax, float tensorScale, float &rowScale) {
  if (tensorScale > 0.0f) {
    rowScale = tensorScale;
    return 1.0f / tensorScale;
  }
  rowScale = amax / 127.0f;
  return amax > 0.0f ? 127.0f / amax : 0.0f;
}
/// One activation code: clamp(nearbyint(x·inv), ±127), x·inv one rounded product.
LATHE_HD int8_t w8a8Code(float x, float inv) {
#if defined(LATHE_DEVICE_BRANCH)
  float v = rintf(__fmul_rn(x, inv));
#else
  float v = __builtin_nearbyintf(x * inv);
#endif
  v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
  return int8_t(v);
}
/// Four int8 products added to acc (CUDA's __dp4a, exact in int32).
LATHE_HD int32_t dot4(uint32_t a, uint32_t b, int32_t acc) {
#if defined(LATHE_DEVICE_BRANCH)
  return __dp4a(int(a), int(b), acc);
#else
  for (int i = 0; i < 4; ++i) acc += int32_t(int8_t(a >> (8 * i))) * int32_t(int8_t(b >> (8 * i)));
  return acc;
#endif
}
/// The CPU tables' epilogue, rounded step by step in their order: float(acc)·rowScale·wScale (+ bias).
LATHE_HD float w8a8Output(int32_t acc, float rowScale, float wScale, const float *bias, int64_t j) {
#if defined(LATHE_DEVICE_BRANCH)
  const float y = __fmul_rn(__fmul_rn(float(acc), rowScale), wScale);
  return bias ? __fadd_rn(y, bias[j]) : y;
#else
  const float y = float(acc) * rowScale * wScale;
  return bias ? y + bias[j] : y;
#endif
}

// ------------------------------------------------------------------ loads

/// `words` 32-bit little-endian words at p. ALIGNED: p is 16-byte aligned for 4
/// words (one 128-bit load), 4-byte aligned otherwise; else byte loads.
template <int WORDS, bool ALIGNED> LATHE_HD void loadWords(const uint8_t *p, uint32_t *w) {
#if defined(LATHE_DEVICE_BRANCH)
  if constexpr (ALIGNED && WORDS == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4 *>(p));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (ALIGNED && WORDS == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2 *>(p));
    w[0] = v.x, w[1] = v.y;
  } else if constexpr (ALIGNED) {
LATHE_UNROLL
    for (int i = 0; i < WORDS; ++i) w[i] = __ldg(reinterpret_cast<const unsigned int *>(p) + i);
  } else {
LATHE_UNROLL
    for (int i = 0; i < WORDS; ++i)
      w[i] = uint32_t(__ldg(p + 4 * i)) | uint32_t(__ldg(p + 4 * i + 1)) << 8 | uint32_t(__ldg(p + 4 * i + 2)) << 16 |
             uint32_t(__ldg(p + 4 * i + 3)) << 24;
  }
#else
  for (int i = 0; i < WORDS; ++i)
    w[i] = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 | uint32_t(p[4 * i + 3]) << 24;
#endif
}

/// COUNT (a multiple of 4) consecutive activations at p: float4 loads when aligned.
template <int COUNT> LATHE_HD void loadX(const float *p, bool aligned, float *out) {
#if defined(LATHE_DEVICE_BRANCH)
  if (aligned) {
LATHE_UNROLL
    for (int i = 0; i < COUNT; i += 4) {
      const float4 v = __ldg(reinterpret_cast<const float4 *>(p + i));
      out[i] = v.x, out[i + 1] = v.y, out[i + 2] = v.z, out[i + 3] = v.w;
    }
    return;
  }
LATHE_UNROLL
  for (int i = 0; i < COUNT; ++i) out[i] = __ldg(p + i);
#else
  (void)aligned;
  for (int i = 0; i < COUNT; ++i) out[i] = p[i];
#endif
}

/// One value through the read-only data cache on the device (a plain load on the host).
template <class T> LATHE_HD T loadReadOnly(const T *p) {
#if defined(LATHE_DEVICE_BRANCH)
  return __ldg(p);
#else
  return *p;
#endif
}
LATHE_HD uint16_t loadU16(const uint16_t *p) { return loadReadOnly(p); }
LATHE_HD float loadF(const float *p) { return loadReadOnly(p); }
LATHE_HD uint8_t loadU8(const uint8_t *p) { return loadReadOnly(p); }

// ------------------------------------------------------------------ decoding one chunk

/// The codes (or bf16/fp16 values) of one chunk, in k order, as exact floats.
template <int F> LATHE_HD void decodeChunk(const uint32_t *w, float *q);

/// int8: 16 signed codes; xor 0x80 makes them unsigned (q + 128), subtracted in the float.
template <> LATHE_HD void decodeChunk<kInt8>(const uint32_t *w, float *q) {
LATHE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const uint32_t u = w[i] ^ 0x80808080u;
LATHE_UNROLL
    for (int b = 0; b < 4; ++b) q[4 * i + b] = byteToFloat(u, b, 128.0f);
  }
}
/// int4 (ggml block of 32): byte t holds weight t (low nibble) and t + 16 (high nibble).
template <> LATHE_HD void decodeChunk<kInt4>(const uint32_t *w, float *q) {
LATHE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = w[i] & 0x0F0F0F0Fu, hi = (w[i] >> 4) & 0x0F0F0F0Fu;
LATHE_UNROLL
    for (int b = 0; b < 4; ++b) {
      q[4 * i + b] = byteToFloat(lo, b, 0.0f);
      q[16 + 4 * i + b] = byteToFloat(hi, b, 0.0f);
    }
  }
}
/// int3 block of 12 bytes: weight t = j + 8s (j = byte 0..7, s = 0..3) has its low two
/// bits at bits 2s of byte j and its high bit at bit t of the word at byte 8.
template <> LATHE_HD void decodeChunk<kInt3>(const uint32_t *w, float *q) {
  const uint32_t high = w[2];
LATHE_UNROLL
  for (int s = 0; s < 4; ++s)
LATHE_UNROLL
    for (int h = 0; h < 2; ++h) { // bytes 0–3 (word 0) then 4–7 (word 1)
      const uint32_t low = (w[h] >> (2 * s)) & 0x03030303u;
      const uint32_t nibble = (high >> (8 * s + 4 * h)) & 0xFu; // high bits of weights 8s+4h .. +3
      const uint32_t spread = ((nibble * 0x00204081u) & 0x01010101u) << 2; // bit b → bit 2 of byte b
      const uint32_t codes = low | spread;
LATHE_UNROLL
      for (int b = 0; b < 4; ++b) q[8 * s + 4 * h + b] = byteToFloat(codes, b, 0.0f);
    }
}
/// bf16: word i holds values 2i (low half) and 2i + 1 (high half).
template <> LATHE_HD void decodeChunk<kBf16>(const uint32_t *w, float *q) {
LATHE_UNROLL
  for (int i = 0; i < 4; ++i) {
    q[2 * i] = bitsToFloat(w[i] << 16);
    q[2 * i + 1] = bitsToFloat(w[i] & 0xFFFF0000u);
  }
}
/// fp16: word i holds halves 2i (low) and 2i + 1 (high), widened exactly.
template <> LATHE_HD void decodeChunk<kF16>(const uint32_t *w, float *q) {
LATHE_UNROLL
  for (int i = 0; i < 4; ++i) {
    q[2 * i] = halfToFloat(uint16_t(w[i] & 0xFFFFu));
    q[2 * i + 1] = halfToFloat(uint16_t(w[i] >> 16));
  }
}

/// Scale and offset of chunk `c` of row `row`: w = d·q + mn (bf16/fp16: d = 1, mn = 0).
template <int F> LATHE_HD void chunkScale(const LinearArgs &a, int64_t row, int64_t c, float &d, float &mn) {
  if constexpr (kFloat16<F>) {
    d = 1.0f, mn = 0.0f;
    return;
  } else {
    const int64_t g = c * Chunk<F>::weights / a.group; // a chunk lies in one group (checked by the host)
    d = halfToFloat(loadU16(a.scales + row * a.groups + g));
    if constexpr (F == kInt8) mn = 0.0f;
    else mn = a.mins ? halfToFloat(loadU16(a.mins + row * a.groups + g)) : (F == kInt4 ? -8.0f : -4.0f) * d;
  }
}

template <int F, bool ALIGNED> LATHE_HD void loadChunk(const LinearArgs &a, int64_t row, int64_t c, uint32_t *w) {
  constexpr int bytes = F == kInt3 ? 12 : 16;
  loadWords<Chunk<F>::words, ALIGNED>(a.q + row * a.rowBytes + c * bytes, w);
}

/// Sum of fma32(x[t], q[t]) over a chunk in four interleaved chains (t % 4), combined as (0+1)+(2+3).
template <int CH> LATHE_HD float chunkDot(const float *x, const float *q) {
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
LATHE_UNROLL
  for (int t = 0; t < CH; ++t) s[t % 4] = fma32(x[t], q[t], s[t % 4]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}
template <int CH> LATHE_HD float chunkSum(const float *x) {
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
LATHE_UNROLL
  for (int t = 0; t < CH; ++t) s[t % 4] += x[t];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// ------------------------------------------------------------------ GEMV lane partial sums

/// Rows a warp computes, for at most MAXM activation rows.
template <int MAXM> struct WarpRows { static constexpr int value = MAXM <= 2 ? 2 : 1; };

/// Whether the chunked GEMV can run `a` for a dense compact format (else scalarPartial,
/// int8/bf16/fp16 only): k whole chunks, groups whole chunks, rows of whole 16-byte (int3:
/// 4-byte) units. Pointer alignment is the caller's (ALIGNED).
template <int F> LATHE_HD bool chunked(const LinearArgs &a) {
  constexpr int CH = Chunk<F>::weights;
  return a.k % CH == 0 && (kFloat16<F> || a.group % CH == 0) && a.rowBytes % (F == kInt3 ? 4 : 16) == 0;
}

/// Lane `lane`'s partial sums for output rows row0 .. row0+R-1 (rows past n read
/// row n-1 and are not stored) and activation rows 0 .. min(m, MAXM)-1: chunks
/// lane, lane + 32, ... of each weight row, two chunks' loads issued together.
template <int F, int MAXM, int R, bool ALIGNED>
LATHE_HD void lanePartial(const LinearArgs &a, int64_t row0, int lane, float (&acc)[R][MAXM]) {
  constexpr int CH = Chunk<F>::weights, NW = Chunk<F>::words;
  const int64_t chunks = a.k / CH;
  int64_t rows[R];
LATHE_UNROLL
  for (int r = 0; r < R; ++r) {
    rows[r] = row0 + r < a.n ? row0 + r : a.n - 1;
LATHE_UNROLL
    for (int i = 0; i < MAXM; ++i) acc[r][i] = 0.0f;
  }
  for (int64_t c0 = lane; c0 < chunks; c0 += 64) {
    uint32_t w[2][R][NW];
    const bool second = c0 + 32 < chunks;
LATHE_UNROLL
    for (int r = 0; r < R; ++r) {
      loadChunk<F, ALIGNED>(a, rows[r], c0, w[0][r]);
      if (second) loadChunk<F, ALIGNED>(a, rows[r], c0 + 32, w[1][r]);
    }
LATHE_UNROLL
    for (int u = 0; u < 2; ++u) {
      if (u == 1 && !second) break;
      const int64_t c = c0 + 32 * u;
      float q[R][CH], d[R], mn[R];
LATHE_UNROLL
      for (int r = 0; r < R; ++r) {
        decodeChunk<F>(w[u][r], q[r]);
        chunkScale<F>(a, rows[r], c, d[r], mn[r]);
      }
LATHE_UNROLL
      for (int i = 0; i < MAXM; ++i) {
        if (i >= a.m) break;
        float xs[CH];
        loadX<CH>(a.x + i * a.ldx + c * CH, a.xAligned != 0, xs);
        const float sx = Chunk<F>::hasMin ? chunkSum<CH>(xs) : 0.0f;
LATHE_UNROLL
        for (int r = 0; r < R; ++r) {
          const float s = chunkDot<CH>(xs, q[r]);
          if constexpr (kFloat16<F>) acc[r][i] += s;
          else {
            acc[r][i] = fma32(d[r], s, acc[r][i]);
            if constexpr (Chunk<F>::hasMin) acc[r][i] = fma32(mn[r], sx, acc[r][i]);
          }
        }
      }
    }
  }
}

/// One weight, any shape (int8, bf16 and fp16 rows that are not whole chunks): W[row, j].
template <int F> LATHE_HD float dequantOne(const LinearArgs &a, int64_t row, int64_t j) {
  if constexpr (kFloat16<F>) {
    const uint8_t *p = a.q + row * a.rowBytes + 2 * j;
    const uint16_t bits = uint16_t(loadU8(p) | loadU8(p + 1) << 8);
    return F == kF16 ? halfToFloat(bits) : bf16ToFloat(bits);
  }
  const float d = halfToFloat(loadU16(a.scales + row * a.groups + j / a.group));
  return d * float(int8_t(loadU8(a.q + row * a.rowBytes + j)));
}

/// The scalar GEMV (int8/bf16/fp16 of any shape): lane takes k indices lane, lane + 32, ...
template <int F, int MAXM, int R>
LATHE_HD void scalarPartial(const LinearArgs &a, int64_t row0, int lane, float (&acc)[R][MAXM]) {
  int64_t rows[R];
LATHE_UNROLL
  for (int r = 0; r < R; ++r) {
    rows[r] = row0 + r < a.n ? row0 + r : a.n - 1;
LATHE_UNROLL
    for (int i = 0; i < MAXM; ++i) acc[r][i] = 0.0f;
  }
  for (int64_t j = lane; j < a.k; j += 32) {
    float wv[R];
LATHE_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = dequantOne<F>(a, rows[r], j);
LATHE_UNROLL
    for (int i = 0; i < MAXM; ++i) {
      if (i >= a.m) break;
      const float xv = loadF(a.x + i * a.ldx + j);
LATHE_UNROLL
      for (int r = 0; r < R; ++r) acc[r][i] = fma32(xv, wv[r], acc[r][i]);
    }
  }
}

// ------------------------------------------------------------------ N:M sparse

/// Chunk c (original columns 32c .. 32c+31) of an N:M row: the 16 kept values'
/// columns relative to 32c and their values (nm-int4: q - 8, scaled by d after the dot).
template <bool INT4, bool ALIGNED>
LATHE_HD void nmChunk(const LinearArgs &a, int64_t row, int64_t c, int *column, float *value) {
  const int M = a.pattern, N = M / 2;
  uint32_t idx[2];
  if (M == 4) loadWords<1, ALIGNED>(a.indices + row * (a.k / 8) + 4 * c, idx), idx[1] = 0;
  else loadWords<2, ALIGNED>(a.indices + row * (a.k / 4) + 8 * c, idx);
LATHE_UNROLL
  for (int u = 0; u < 16; ++u) {
    const int index = M == 4 ? int(idx[0] >> (2 * u)) & 3 : int(idx[u / 8] >> (4 * (u % 8))) & 7;
    column[u] = (u / N) * M + index;
  }
  if constexpr (INT4) {
    uint32_t codes[2];
    loadWords<2, ALIGNED>(a.q + row * a.rowBytes + 8 * c, codes);
LATHE_UNROLL
    for (int u = 0; u < 16; ++u) value[u] = float(int((codes[u / 8] >> (4 * (u % 8))) & 15u) - 8);
  } else {
    uint32_t v[16];
LATHE_UNROLL
    for (int i = 0; i < 4; ++i) loadWords<4, ALIGNED>(a.q + row * a.rowBytes + 64 * c + 16 * i, v + 4 * i);
LATHE_UNROLL
    for (int u = 0; u < 16; ++u) value[u] = bitsToFloat(v[u]);
  }
}

/// Lane partials of the N:M GEMV: chunks (32-column blocks) lane, lane + 32, ...
template <bool INT4, int MAXM, int R, bool ALIGNED>
LATHE_HD void nmPartial(const LinearArgs &a, int64_t row0, int lane, float (&acc)[R][MAXM]) {
  const int64_t chunks = a.k / 32;
  int64_t rows[R];
LATHE_UNROLL
  for (int r = 0; r < R; ++r) {
    rows[r] = row0 + r < a.n ? row0 + r : a.n - 1;
LATHE_UNROLL
    for (int i = 0; i < MAXM; ++i) acc[r][i] = 0.0f;
  }
  for (int64_t c = lane; c < chunks; c += 32) {
    int column[R][16];
    float value[R][16], d[R];
LATHE_UNROLL
    for (int r = 0; r < R; ++r) {
      nmChunk<INT4, ALIGNED>(a, rows[r], c, column[r], value[r]);
      d[r] = INT4 ? halfToFloat(loadU16(a.scales + rows[r] * a.groups + 32 * c / a.group)) : 1.0f;
    }
LATHE_UNROLL
    for (int i = 0; i < MAXM; ++i) {
      if (i >= a.m) break;
      const float *xr = a.x + i * a.ldx + 32 * c;
LATHE_UNROLL
      for (int r = 0; r < R; ++r) {
        float xs[16];
LATHE_UNROLL
        for (int u = 0; u < 16; ++u) xs[u] = loadF(xr + column[r][u]);
        const float s = chunkDot<16>(xs, value[r]);
        if constexpr (INT4) acc[r][i] = fma32(d[r], s, acc[r][i]);
        else acc[r][i] += s;
      }
    }
  }
}

// ------------------------------------------------------------------ dequantizing to dense (many rows)

/// W[row, 32c .. 32c+31] of an N:M row as dense floats (zeros where pruned).
template <bool INT4, bool ALIGNED> LATHE_HD void nmDense(const LinearArgs &a, int64_t row, int64_t c, float *out) {
  int column[16];
  float value[16];
  nmChunk<INT4, ALIGNED>(a, row, c, column, value);
  const float d = INT4 ? halfToFloat(loadU16(a.scales + row * a.groups + 32 * c / a.group)) : 1.0f;
LATHE_UNROLL
  for (int t = 0; t < 32; ++t) out[t] = 0.0f;
  for (int u = 0; u < 16; ++u) out[column[u]] = INT4 ? d * value[u] : value[u];
}

/// W[row, c·CH .. c·CH+CH) of a chunked compact format as floats: d·q + mn (int8: d·q).
template <int F, bool ALIGNED> LATHE_HD void denseChunk(const LinearArgs &a, int64_t row, int64_t c, float *out) {
  uint32_t w[Chunk<F>::words];
  loadChunk<F, ALIGNED>(a, row, c, w);
  decodeChunk<F>(w, out);
  if constexpr (!kFloat16<F>) {
    float d, mn;
    chunkScale<F>(a, row, c, d, mn);
LATHE_UNROLL
    for (int t = 0; t < Chunk<F>::weights; ++t) out[t] = Chunk<F>::hasMin ? fma32(d, out[t], mn) : d * out[t];
  }
}

// ------------------------------------------------------------------ unstructured (bitmap) sparse
// bitmap-f32 (runtime/cpu/SparseNm.h): masks u8 [n, k/8] (word w of a row, little-endian,
// has bit c % 32 for column 32w + c), the kept values of all rows in order. A warp takes
// one output row; lane l takes mask words l, l + 32, ...; the values of a word start
// where the lanes before it (an exclusive scan of their popcounts) and the passes
// before end, from the row's start (the popcount of the rows before it, computed once
// per weight).

LATHE_HD int popcount32(uint32_t v) {
#if defined(LATHE_DEVICE_BRANCH)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}
LATHE_HD int lowestBit(uint32_t v) { // v != 0
#if defined(LATHE_DEVICE_BRANCH)
  return __ffs(int(v)) - 1;
#else
  return __builtin_ctz(v);
#endif
}
/// Mask word w (32 columns) of row `row` of a bitmap with k columns (bytes: any alignment).
LATHE_HD uint32_t bitmapMaskWord(const uint8_t *masks, int64_t row, int64_t w, int64_t k) {
  const uint8_t *p = masks + row * (k / 8) + 4 * w;
  return uint32_t(loadU8(p)) | uint32_t(loadU8(p + 1)) << 8 | uint32_t(loadU8(p + 2)) << 16 | uint32_t(loadU8(p + 3)) << 24;
}
/// One mask word's products: its kept values (vals, column order) times columns colBase + bit
/// of each of `rows` activation rows, fp32 fma in column order.
template <int MAXM>
LATHE_HD void bitmapWord(uint32_t mask, const float *vals, const float *x, int64_t ldx, int64_t rows, int64_t colBase, float *acc) {
  for (int idx = 0; mask; ++idx, mask &= mask - 1) {
    const int64_t col = colBase + lowestBit(mask);
    const float v = loadF(vals + idx);
LATHE_UNROLL
    for (int r = 0; r < MAXM; ++r)
      if (r < rows) acc[r] = fma32(loadF(x + r * ldx + col), v, acc[r]);
  }
}
/// The dense 32 columns of one mask word: kept values in place, zeros elsewhere.
LATHE_HD void bitmapDenseWord(uint32_t mask, const float *vals, float *out) {
  int idx = 0;
  for (int b = 0; b < 32; ++b) out[b] = (mask >> b & 1u) ? loadF(vals + idx++) : 0.0f;
}

// ------------------------------------------------------------------ warp reduction, output

/// The device's butterfly `v += __shfl_xor_sync(~0u, v, o)` for o = 16, 8, 4, 2, 1,
/// emulated on 32 lane values (lane l adds lane l ^ o's value to its own); every
/// lane ends with the same sum, returned.
inline float reduceLanes(const float *partial) {
  float v[32], t[32];
  for (int l = 0; l < 32; ++l) v[l] = partial[l];
  for (int o = 16; o >= 1; o /= 2) {
    for (int l = 0; l < 32; ++l) t[l] = v[l] + v[l ^ o];
    for (int l = 0; l < 32; ++l) v[l] = t[l];
  }
  return v[0];
}

/// The stored output: the warp's sum plus the bias.
LATHE_HD float finishOutput(const LinearArgs &a, int64_t row, float sum) { return a.bias ? sum + loadF(a.bias + row) : sum; }

} // namespace lathe::cuda::math
