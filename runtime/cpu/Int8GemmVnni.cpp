// The int8 GEMM on AVX-512 VNNI (compiled with -march=x86-64-v4 -mavx512vnni).
//
// vpdpbusd multiplies unsigned bytes by signed bytes, four pairs per int32
// lane, and adds them to the lane without saturation: 64 multiply-adds per
// instruction. Activations are therefore stored as u8 = q + 128 and weights as
// s8; Σ (q + 128)·w = Σ q·w + 128·Σ w, so each output column subtracts
// 128·Σ_k w[j, k], precomputed at pack time. No int32 can overflow for
// k < 66000 (|Σ| ≤ 255·127·k).
//
// Packed weights: one panel per 64 output columns, each
//   [64 int32: 128·Σ_k w[j, k]] [ceil(k/4) groups: 64 columns × 4 consecutive k, s8]
// so a group is four zmm of 16 lanes, lane j holding w[j, k..k+3]. k is padded
// to a multiple of 4 with zero weights (activation padding is u8 128, q = 0)
// and n to the panel with zero columns.
// Activations: u8 rows of k rounded up to 4.
#include "runtime/cpu/Int8Gemm.h"

#include <immintrin.h>

namespace lathe::cpu::int8vnni {
namespace {

constexpr int64_t NR = 64;            // panel width: 4 vectors of 16 int32 columns
constexpr int MR = 6;                 // rows per micro-tile: 6 x 4 = 24 accumulators of the 32 zmm
constexpr int64_t MC = 32 * MR;       // row block: its activations stay in L2 while every panel streams past
constexpr int64_t GROUP_BYTES = NR * 4;
constexpr int64_t PREFETCH_GROUPS = 8; // decode (one row) streams each panel once: fetch this far ahead

int64_t groups(int64_t k) { return (k + 3) / 4; }
int64_t panelBytes(int64_t k) { return NR * 4 + groups(k) * GROUP_BYTES; }

int64_t packedWeightBytes(int64_t n, int64_t k) { return (n + NR - 1) / NR * panelBytes(k); }

void packWeights(const int8_t *q, int64_t n, int64_t k, uint8_t *packed) { packPadded(q, n, k, groups(k) * 4, packed); }

int64_t activationBytes(int64_t m, int64_t k) { return m * groups(k) * 4; }

__mmask16 tailMask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

void quantizeActivations(const float *x, int64_t lda, int64_t k, int64_t rowBegin, int64_t rowEnd,
                         const float *invScale, float tensorScale, void *xq, float *rowScale) {
  quantizePadded(x, lda, k, groups(k) * 4, rowBegin, rowEnd, invScale, tensorScale, xq, rowScale);
}

struct Tile {
  const uint8_t *a;     // first row's activations
  int64_t lda;          // bytes per activation row
  const uint8_t *panel; // the panel of the tile's columns
  int64_t groups;
  const float *rowScale, *wScale, *bias; // at the tile's first row / column
  float *c;
  int64_t ldc, cols; // cols ≤ NR are stored
};

// y = float(acc − 128·Σw) · rowScale · wScale (+ bias), in that order in every
// table (compiled with -ffp-contract=off: a fused multiply-add would round
// differently from the other levels). A separate function reading the sums
// from memory: inlined into the tile, its extra live registers made GCC spill
// accumulators inside the k loop (a store per vpdpbusd, half the throughput).
template <int R, int V>
__attribute__((noinline)) void epilogue(const Tile &t, const int32_t *sums) {
  const int32_t *corr = reinterpret_cast<const int32_t *>(t.panel);
  for (int v = 0; v < V; ++v) {
    const __mmask16 mask = tailMask(t.cols - v * 16);
    const __m512i cv = _mm512_loadu_si512(corr + v * 16);
    const __m512 ws = _mm512_maskz_loadu_ps(mask, t.wScale + v * 16);
    const __m512 bs = t.bias ? _mm512_maskz_loadu_ps(mask, t.bias + v * 16) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      __m512 y = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(sums + (r * V + v) * 16), cv));
      y = _mm512_mul_ps(_mm512_mul_ps(y, _mm512_set1_ps(t.rowScale[r])), ws);
      if (t.bias) y = _mm512_add_ps(y, bs); // no bias: no +0 (it would turn −0 into +0)
      _mm512_mask_storeu_ps(t.c + r * t.ldc + v * 16, mask, y);
    }
  }
}

// R rows × V vectors (16·V columns) over the whole k, in registers.
template <int R, int V>
void tile(const Tile &t) {
  __m512i acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
  const uint8_t *w = t.panel + NR * 4;
  for (int64_t g = 0; g < t.groups; ++g, w += GROUP_BYTES) {
    if (R == 1)
      for (int v = 0; v < V; ++v) _mm_prefetch(reinterpret_cast<const char *>(w + PREFETCH_GROUPS * GROUP_BYTES + v * 64), _MM_HINT_T0);
    __m512i b[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) b[v] = _mm512_loadu_si512(w + v * 64);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t four;
      __builtin_memcpy(&four, t.a + r * t.lda + g * 4, 4);
      const __m512i a = _mm512_set1_epi32(four);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a, b[v]);
    }
  }
  alignas(64) int32_t sums[R * V * 16];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) _mm512_store_si512(sums + (r * V + v) * 16, acc[r][v]);
  epilogue<R, V>(t, sums);
}

using TileFn = void (*)(const Tile &);
// [rows − 1][vectors − 1]: the row tails and the last panel's partial columns
// get their own smaller tiles rather than computing padding.
const TileFn kTiles[MR][4] = {
    {tile<1, 1>, tile<1, 2>, tile<1, 3>, tile<1, 4>}, {tile<2, 1>, tile<2, 2>, tile<2, 3>, tile<2, 4>},
    {tile<3, 1>, tile<3, 2>, tile<3, 3>, tile<3, 4>}, {tile<4, 1>, tile<4, 2>, tile<4, 3>, tile<4, 4>},
    {tile<5, 1>, tile<5, 2>, tile<5, 3>, tile<5, 4>}, {tile<6, 1>, tile<6, 2>, tile<6, 3>, tile<6, 4>}};

void run(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd, int64_t lda,
         int64_t panelStride) {
  const int64_t kg = groups(g->k);
  const uint8_t *xq = static_cast<const uint8_t *>(g->xq);
  for (int64_t i0 = rowBegin; i0 < rowEnd; i0 += MC) {
    const int64_t iEnd = rowEnd - i0 < MC ? rowEnd : i0 + MC;
    for (int64_t n0 = nBegin; n0 < nEnd; n0 += NR) { // nBegin is a multiple of NR
      Tile t;
      t.lda = lda;
      t.panel = g->packed + n0 / NR * panelStride;
      t.groups = kg;
      t.wScale = g->wScale + n0;
      t.bias = g->bias ? g->bias + n0 : nullptr;
      t.ldc = g->ldc;
      t.cols = nEnd - n0 < NR ? nEnd - n0 : NR;
      for (int64_t i = i0; i < iEnd; i += MR) {
        const int64_t rows = iEnd - i < MR ? iEnd - i : MR;
        t.a = xq + i * lda;
        t.rowScale = g->rowScale + i;
        t.c = g->c + i * g->ldc + n0;
        kTiles[rows - 1][(t.cols + 15) / 16 - 1](t);
      }
    }
  }
}

void gemm(const Int8GemmArgs *g, int64_t nBegin, int64_t nEnd) {
  run(g, 0, g->m, nBegin, nEnd, groups(g->k) * 4, panelBytes(g->k));
}
void gemmRows(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd) {
  run(g, rowBegin, rowEnd, 0, g->n, groups(g->k) * 4, panelBytes(g->k));
}

const Int8Table kTable = {"avx512-vnni", NR, packedWeightBytes, packWeights, activationBytes,
                          quantizeActivations, gemm, gemmRows, MR};

} // namespace

const Int8Table *table() { return &kTable; }

// Panels of kp (≥ k, a multiple of 4) k values, the last kp − k of them zero.
void packPadded(const int8_t *q, int64_t n, int64_t k, int64_t kp, uint8_t *packed) {
  const int64_t stride = NR * 4 + kp / 4 * GROUP_BYTES;
  for (int64_t n0 = 0; n0 < n; n0 += NR) {
    uint8_t *panel = packed + n0 / NR * stride;
    int32_t *corr = reinterpret_cast<int32_t *>(panel);
    int8_t *w = reinterpret_cast<int8_t *>(panel + NR * 4);
    for (int64_t j = 0; j < NR; ++j) {
      int32_t sum = 0;
      for (int64_t kk = 0; kk < kp; ++kk) {
        const int8_t v = n0 + j < n && kk < k ? q[(n0 + j) * k + kk] : 0;
        w[kk / 4 * GROUP_BYTES + j * 4 + kk % 4] = v;
        sum += v;
      }
      corr[j] = 128 * sum;
    }
  }
}

// Rows of kp bytes (k rounded up to 4 here, to 64 in the AMX table's layout).
void quantizePadded(const float *x, int64_t lda, int64_t k, int64_t kp, int64_t rowBegin, int64_t rowEnd,
                    const float *invScale, float tensorScale, void *xq, float *rowScale) {
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512i offset = _mm512_set1_epi32(128);
  for (int64_t r = rowBegin; r < rowEnd; ++r) {
    const float *src = x + r * lda;
    uint8_t *dst = static_cast<uint8_t *>(xq) + r * kp;
    float inv;
    if (invScale || tensorScale > 0) {
      rowScale[r] = tensorScale;
      inv = 1.0f / tensorScale;
    } else {
      __m512 mx = _mm512_setzero_ps();
      for (int64_t i = 0; i < k; i += 16)
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(tailMask(k - i), src + i)));
      const float m = _mm512_reduce_max_ps(mx); // max is exact in any order
      rowScale[r] = m / 127.0f;
      inv = m > 0 ? 127.0f / m : 0.0f; // a zero row quantizes to 0 through x·0
    }
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 mask = tailMask(k - i);
      __m512 v = _mm512_maskz_loadu_ps(mask, src + i);
      v = _mm512_mul_ps(v, invScale ? _mm512_maskz_loadu_ps(mask, invScale + i) : vinv);
      // Clamping before rounding gives the same integer as rounding first, and
      // keeps vcvtps2dq (round to nearest even, like nearbyint) in range.
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm512_mask_cvtepi32_storeu_epi8(dst + i, mask, _mm512_add_epi32(_mm512_cvtps_epi32(v), offset));
    }
    for (int64_t i = k; i < kp; ++i) dst[i] = 128;
  }
}

void gemmPadded(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd, int64_t lda,
                int64_t panelStride) {
  run(g, rowBegin, rowEnd, nBegin, nEnd, lda, panelStride);
}

} // namespace lathe::cpu::int8vnni
