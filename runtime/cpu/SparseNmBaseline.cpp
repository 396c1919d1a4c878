// N:M sparse linear layers (SparseNm.h), portable C++ (-march=x86-64).
//
// Up to 4 rows of x: scalar dot products straight from the compressed data
// (int4: one partial sum per group, scaled once). More rows: panels of 8
// output rows × 256 columns are decompressed into a dense [k][8] scratch and
// multiplied by a 4×8 tile (plain vector extensions, SSE2 here).
#include "runtime/cpu/SparseNm.h"

namespace lathe::cpu::nmbaseline {
namespace {

constexpr int VW = 4;
constexpr int NR = 8; // prefill panel width, = panelWidth
constexpr int NV = NR / VW;
constexpr int MR = 4;
constexpr int64_t KC = 256;
constexpr int GEMV_MAX_ROWS = 4;

typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));
vf load(const float *p) { return *(const vf *)p; }
void store(float *p, vf v) { *(vf *)p = v; }
vf splat(float s) { return s - (vf){}; }

float halfToFloat(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0) { // zero or subnormal: mantissa · 2^-24, exact in float
    float f = (float)mantissa * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  uint32_t bits = exponent == 31 ? (sign | 0x7F800000u | mantissa << 13) : (sign | (exponent + 112) << 23 | mantissa << 13);
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

int indexOf(const uint8_t *rowIndices, int64_t t, int pattern) {
  return pattern == 4 ? (rowIndices[t / 4] >> (2 * (t % 4))) & 3 : (rowIndices[t / 2] >> (4 * (t % 2))) & 7;
}

// One weight row against XR rows of x: four interleaved partial sums per x row
// (kept value t into sum t % 4), combined in a fixed order.
template <int XR>
void gemvRow(const NmArgs *a, int64_t row) {
  const int64_t K = a->k, M = a->pattern, N = M / 2, indexBytes = M == 4 ? K / 8 : K / 4;
  const uint8_t *idx = a->indices + row * indexBytes;
  float acc[XR][4] = {};
  if (!a->codes) {
    const float *val = a->values + row * (K / 2);
    for (int64_t t = 0; t < K / 2; t += 4)
      for (int u = 0; u < 4; ++u) {
        const int64_t column = ((t + u) / N) * M + indexOf(idx, t + u, int(M));
        for (int r = 0; r < XR; ++r) acc[r][u] += a->x[r * a->lda + column] * val[t + u];
      }
  } else {
    const int64_t G = a->group, groups = (K + G - 1) / G;
    const uint8_t *codes = a->codes + row * (K / 4);
    for (int64_t g = 0; g < groups; ++g) {
      float s[XR][4] = {};
      const int64_t tEnd = (g + 1) * G < K ? (g + 1) * G / 2 : K / 2;
      for (int64_t t = g * G / 2; t < tEnd; t += 4)
        for (int u = 0; u < 4; ++u) {
          const int64_t column = ((t + u) / N) * M + indexOf(idx, t + u, int(M));
          const float q = (float)(((codes[(t + u) / 2] >> (4 * ((t + u) % 2))) & 15) - 8);
          for (int r = 0; r < XR; ++r) s[r][u] += a->x[r * a->lda + column] * q;
        }
      const float scale = halfToFloat(a->scales[row * groups + g]);
      for (int r = 0; r < XR; ++r)
        for (int u = 0; u < 4; ++u) acc[r][u] += s[r][u] * scale;
    }
  }
  for (int r = 0; r < XR; ++r)
    a->c[r * a->ldc + row] = ((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3])) + (a->bias ? a->bias[row] : 0.0f);
}

template <int XR>
void gemvRows(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  for (int64_t j = nBegin; j < nEnd; ++j) gemvRow<XR>(a, j);
}

// ---------------------------------------------------------------- prefill
// Weight rows n0 .. n0 + cols, columns k0 .. k0 + kb (multiples of 32), as a
// dense [kb][NR] panel (zero where pruned and past cols). Templated on the
// pattern so no division is left in the loop (a runtime divisor made this
// the prefill's bottleneck).
template <int PATTERN, bool INT4>
void decompressPanel(const NmArgs *a, int64_t n0, int64_t cols, int64_t k0, int64_t kb, float *panel) {
  constexpr int N = PATTERN / 2;
  const int64_t K = a->k, indexBytes = PATTERN == 4 ? K / 8 : K / 4;
  const int64_t groups = INT4 ? (K + a->group - 1) / a->group : 0;
  // Block by block (zeroed just before it is filled), every row of the panel:
  // the writes stay within the block's 32 panel rows, in L1. Zeroing the whole
  // panel first (or filling it row by row) left the scattered stores missing
  // L1, and decompressing cost 10x the dense GEMM at m = 5.
  for (int64_t c0 = k0; c0 < k0 + kb; c0 += 32) { // one aligned block: 16 kept values per row
    __builtin_memset(panel + (c0 - k0) * NR, 0, sizeof(float) * 32 * NR);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t row = n0 + j;
      const uint8_t *idx = a->indices + row * indexBytes;
      float scale = 0.0f;
      if (INT4) scale = halfToFloat(a->scales[row * groups + c0 / a->group]);
      float *out = panel + (c0 - k0) * NR + j;
      for (int u = 0; u < 16; ++u) {
        const int64_t t = c0 / 2 + u;
        const int index = PATTERN == 4 ? (idx[t / 4] >> (2 * (t % 4))) & 3 : (idx[t / 2] >> (4 * (t % 2))) & 7;
        float v;
        if (INT4) v = scale * (float)(((a->codes[row * (K / 4) + t / 2] >> (4 * (t % 2))) & 15) - 8);
        else v = a->values[row * (K / 2) + t];
        out[((u / N) * PATTERN + index) * NR] = v;
      }
    }
  }
}

template <int R>
void microTile(const float *x, int64_t lda, const float *panel, int64_t kb, float *c, int64_t ldc, int64_t cols,
               int first, const float *bias) {
  vf acc[R][NV];
  for (int r = 0; r < R; ++r) {
    float row[NR];
    for (int j = 0; j < NR; ++j) row[j] = j >= cols ? 0.0f : first ? (bias ? bias[j] : 0.0f) : c[r * ldc + j];
    for (int v = 0; v < NV; ++v) acc[r][v] = load(row + v * VW);
  }
  for (int64_t k = 0; k < kb; ++k) {
    vf b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load(panel + k * NR + v * VW);
    for (int r = 0; r < R; ++r) {
      const vf xv = splat(x[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] += xv * b[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    float row[NR];
    for (int v = 0; v < NV; ++v) store(row + v * VW, acc[r][v]);
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = row[j];
  }
}

void prefill(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  float panel[KC * NR] __attribute__((aligned(64)));
  void (*decompress)(const NmArgs *, int64_t, int64_t, int64_t, int64_t, float *) =
      a->pattern == 4 ? (a->codes ? decompressPanel<4, true> : decompressPanel<4, false>)
                      : (a->codes ? decompressPanel<8, true> : decompressPanel<8, false>);
  for (int64_t n0 = nBegin; n0 < nEnd; n0 += NR) {
    const int64_t cols = nEnd - n0 < NR ? nEnd - n0 : NR;
    const float *bias = a->bias ? a->bias + n0 : nullptr;
    for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
      const int64_t kb = a->k - k0 < KC ? a->k - k0 : KC;
      decompress(a, n0, cols, k0, kb, panel);
      const int first = k0 == 0;
      const float *x = a->x + k0;
      float *c = a->c + n0;
      int64_t i = 0;
      for (; i + MR <= a->m; i += MR) microTile<MR>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i < a->m; ++i) microTile<1>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
    }
  }
}

void gemm(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  if (a->m <= 0 || nBegin >= nEnd) return;
  if (a->m > GEMV_MAX_ROWS) return prefill(a, nBegin, nEnd);
  switch (a->m) {
  case 1: return gemvRows<1>(a, nBegin, nEnd);
  case 2: return gemvRows<2>(a, nBegin, nEnd);
  case 3: return gemvRows<3>(a, nBegin, nEnd);
  default: return gemvRows<4>(a, nBegin, nEnd);
  }
}

// ---------------------------------------------------------------- bitmap
// Up to 4 rows of x: scalar, over each 32-bit mask word's set bits (column c
// into partial sum c % 4). More rows: decompressed panels, as for N:M.

uint32_t load32(const uint8_t *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

int64_t popcountBytes(const uint8_t *p, int64_t bytes) { // bytes: a multiple of 4
  int64_t bits = 0;
  for (int64_t i = 0; i < bytes; i += 4) bits += __builtin_popcount(load32(p + i));
  return bits;
}

template <int XR>
const float *bitmapRow(const BitmapArgs *a, int64_t row, const float *val) {
  const int64_t K = a->k, maskBytes = K / 8;
  const uint8_t *mask = a->masks + row * maskBytes;
  float acc[XR][4] = {};
  for (int64_t b = 0; b < K / 32; ++b)
    for (uint32_t bits = load32(mask + 4 * b); bits; bits &= bits - 1) {
      const int64_t column = 32 * b + __builtin_ctz(bits);
      const float v = *val++;
      for (int r = 0; r < XR; ++r) acc[r][column & 3] += a->x[r * a->lda + column] * v;
    }
  for (int r = 0; r < XR; ++r)
    a->c[r * a->ldc + row] = ((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3])) + (a->bias ? a->bias[row] : 0.0f);
  return val;
}

template <int XR>
void bitmapRows(const BitmapArgs *a, int64_t nBegin, int64_t nEnd, const float *start) {
  for (int64_t j = nBegin; j < nEnd; ++j) start = bitmapRow<XR>(a, j, start);
}

void bitmapPrefill(const BitmapArgs *a, int64_t nBegin, int64_t nEnd, const float *start) {
  float panel[KC * NR] __attribute__((aligned(64)));
  const int64_t maskBytes = a->k / 8;
  for (int64_t n0 = nBegin; n0 < nEnd; n0 += NR) {
    const int64_t cols = nEnd - n0 < NR ? nEnd - n0 : NR;
    const float *val[NR];
    for (int64_t j = 0; j < cols; ++j) {
      val[j] = start;
      start += popcountBytes(a->masks + (n0 + j) * maskBytes, maskBytes);
    }
    if (cols < NR) __builtin_memset(panel, 0, sizeof panel);
    const float *bias = a->bias ? a->bias + n0 : nullptr;
    for (int64_t k0 = 0; k0 < a->k; k0 += KC) {
      const int64_t kb = a->k - k0 < KC ? a->k - k0 : KC;
      for (int64_t j = 0; j < cols; ++j) {
        const uint8_t *mask = a->masks + (n0 + j) * maskBytes;
        for (int64_t c = k0; c < k0 + kb; ++c)
          panel[(c - k0) * NR + j] = (mask[c / 8] >> (c % 8) & 1) ? *val[j]++ : 0.0f;
      }
      const int first = k0 == 0;
      const float *x = a->x + k0;
      float *c = a->c + n0;
      int64_t i = 0;
      for (; i + MR <= a->m; i += MR) microTile<MR>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i < a->m; ++i) microTile<1>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
    }
  }
}

void bitmapGemm(const BitmapArgs *a, int64_t nBegin, int64_t nEnd) {
  if (a->m <= 0 || nBegin >= nEnd) return;
  const float *start = a->values + popcountBytes(a->masks, nBegin * (a->k / 8));
  if (a->m > GEMV_MAX_ROWS) return bitmapPrefill(a, nBegin, nEnd, start);
  switch (a->m) {
  case 1: return bitmapRows<1>(a, nBegin, nEnd, start);
  case 2: return bitmapRows<2>(a, nBegin, nEnd, start);
  case 3: return bitmapRows<3>(a, nBegin, nEnd, start);
  default: return bitmapRows<4>(a, nBegin, nEnd, start);
  }
}

const NmTable kTable = {"baseline", NR, gemm, bitmapGemm};

} // namespace

const NmTable *table() { return &kTable; }

} // namespace lathe::cpu::nmbaseline
