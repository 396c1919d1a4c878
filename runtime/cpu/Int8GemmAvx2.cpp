// The int8 GEMM on AVX2 (compiled with -march=x86-64-v3).
//
// Without VNNI the products go through vpmaddwd: s16 × s16 pairs summed into
// s32 lanes, exact (|q·w| ≤ 127², a pair ≤ 32258). vpmaddubsw would save the
// widening but saturates its s16 pair sums, so it is not used. Weights stay s8
// in memory (half the bytes to stream) and are widened with vpmovsxbw as they
// are loaded; activations are stored already widened to s16.
//
// Packed weights: one panel per 16 output columns, each ceil(k/2) pairs of
// 16 columns × 2 consecutive k (s8, 32 bytes: two 8-column halves that widen
// to one ymm each, lane j holding w[j, k..k+1]), zero-padded in k and n, the
// panel rounded up to 64 bytes.
// Activations: s16 rows of k rounded up to 2 (padding 0).
#include "runtime/cpu/Int8Gemm.h"

#include <immintrin.h>

namespace lathe::cpu::int8avx2 {
namespace {

constexpr int64_t NR = 16;      // panel width: 2 vectors of 8 int32 columns
constexpr int MR = 6;           // rows per micro-tile: 12 accumulators + 2 weights + 1 broadcast of 16 ymm
constexpr int64_t MC = 32 * MR; // row block: its activations stay in L2 while every panel streams past
constexpr int64_t PAIR_BYTES = NR * 2;

int64_t pairs(int64_t k) { return (k + 1) / 2; }
int64_t panelBytes(int64_t k) { return (pairs(k) * PAIR_BYTES + 63) / 64 * 64; }

int64_t packedWeightBytes(int64_t n, int64_t k) { return (n + NR - 1) / NR * panelBytes(k); }

void packWeights(const int8_t *q, int64_t n, int64_t k, uint8_t *packed) {
  const int64_t bytes = packedWeightBytes(n, k);
  for (int64_t i = 0; i < bytes; ++i) packed[i] = 0;
  for (int64_t j = 0; j < n; ++j) {
    int8_t *panel = reinterpret_cast<int8_t *>(packed + j / NR * panelBytes(k));
    for (int64_t kk = 0; kk < k; ++kk) panel[kk / 2 * PAIR_BYTES + j % NR * 2 + kk % 2] = q[j * k + kk];
  }
}

int64_t activationBytes(int64_t m, int64_t k) { return m * pairs(k) * 2 * 2; }

void quantizeActivations(const float *x, int64_t lda, int64_t k, int64_t rowBegin, int64_t rowEnd,
                         const float *invScale, float tensorScale, void *xq, float *rowScale) {
  const int64_t kp = pairs(k) * 2;
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int64_t r = rowBegin; r < rowEnd; ++r) {
    const float *src = x + r * lda;
    int16_t *dst = static_cast<int16_t *>(xq) + r * kp;
    float inv;
    if (invScale || tensorScale > 0) {
      rowScale[r] = tensorScale;
      inv = 1.0f / tensorScale;
    } else {
      __m256 mx = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(src + i), absMask));
      float lanes[8], m = 0.0f;
      _mm256_storeu_ps(lanes, mx);
      for (float l : lanes) m = l > m ? l : m;
      for (; i < k; ++i) m = __builtin_fabsf(src[i]) > m ? __builtin_fabsf(src[i]) : m; // max is exact in any order
      rowScale[r] = m / 127.0f;
      inv = m > 0 ? 127.0f / m : 0.0f; // a zero row quantizes to 0 through x·0
    }
    const __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + i), invScale ? _mm256_loadu_ps(invScale + i) : vinv);
      // Clamping before rounding gives the same integer as rounding first, and
      // keeps vcvtps2dq (round to nearest even, like nearbyint) in range.
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i q = _mm256_cvtps_epi32(v);
      // packs works within 128-bit lanes: gather the low halves of both lanes.
      const __m256i q16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q, q), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + i), _mm256_castsi256_si128(q16));
    }
    for (; i < k; ++i) {
      float v = __builtin_nearbyintf(src[i] * (invScale ? invScale[i] : inv));
      v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
      dst[i] = int16_t(v);
    }
    for (; i < kp; ++i) dst[i] = 0;
  }
}

struct Tile {
  const int16_t *a;     // first row's activations
  int64_t lda;          // elements per activation row
  const uint8_t *panel; // the panel of the tile's columns
  int64_t pairs;
  const float *rowScale, *wScale, *bias; // at the tile's first row / column
  float *c;
  int64_t ldc, cols; // cols ≤ NR are stored
};

// y = float(acc) · rowScale · wScale (+ bias), in that order in every table
// (compiled with -ffp-contract=off: a fused multiply-add would round
// differently from the other levels). A separate function reading the sums
// from memory: inlined into the tile, its extra live registers made GCC spill
// accumulators inside the k loop.
template <int R, int V>
__attribute__((noinline)) void epilogue(const Tile &t, const int32_t *sums) {
  // Scales and bias of the tile's columns, zero past cols (those lanes are not stored).
  float ws[NR], bs[NR];
  for (int j = 0; j < V * 8; ++j) {
    ws[j] = j < t.cols ? t.wScale[j] : 0.0f;
    bs[j] = t.bias && j < t.cols ? t.bias[j] : 0.0f;
  }
  for (int r = 0; r < R; ++r) {
    float row[NR];
    float *out = t.cols >= V * 8 ? t.c + r * t.ldc : row;
    const __m256 rs = _mm256_set1_ps(t.rowScale[r]);
    for (int v = 0; v < V; ++v) {
      const __m256i acc = _mm256_load_si256(reinterpret_cast<const __m256i *>(sums + (r * V + v) * 8));
      __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), rs), _mm256_loadu_ps(ws + v * 8));
      if (t.bias) y = _mm256_add_ps(y, _mm256_loadu_ps(bs + v * 8)); // no bias: no +0 (it would turn −0 into +0)
      _mm256_storeu_ps(out + v * 8, y);
    }
    if (out == row)
      for (int64_t j = 0; j < t.cols; ++j) t.c[r * t.ldc + j] = row[j];
  }
}

// R rows × V vectors (8·V columns) over the whole k, in registers.
template <int R, int V>
void tile(const Tile &t) {
  __m256i acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_si256();
  const uint8_t *w = t.panel;
  for (int64_t p = 0; p < t.pairs; ++p, w += PAIR_BYTES) {
    __m256i b[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) b[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(w + v * 16)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t two;
      __builtin_memcpy(&two, t.a + r * t.lda + p * 2, 4);
      const __m256i a = _mm256_set1_epi32(two);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(a, b[v]));
    }
  }
  alignas(32) int32_t sums[R * V * 8];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) _mm256_store_si256(reinterpret_cast<__m256i *>(sums + (r * V + v) * 8), acc[r][v]);
  epilogue<R, V>(t, sums);
}

using TileFn = void (*)(const Tile &);
// [rows − 1][vectors − 1]: the row tails and a last panel of ≤ 8 columns get
// their own smaller tiles rather than computing padding.
const TileFn kTiles[MR][2] = {{tile<1, 1>, tile<1, 2>}, {tile<2, 1>, tile<2, 2>}, {tile<3, 1>, tile<3, 2>},
                              {tile<4, 1>, tile<4, 2>}, {tile<5, 1>, tile<5, 2>}, {tile<6, 1>, tile<6, 2>}};

void run(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd) {
  const int64_t lda = pairs(g->k) * 2;
  const int16_t *xq = static_cast<const int16_t *>(g->xq);
  for (int64_t i0 = rowBegin; i0 < rowEnd; i0 += MC) {
    const int64_t iEnd = rowEnd - i0 < MC ? rowEnd : i0 + MC;
    for (int64_t n0 = nBegin; n0 < nEnd; n0 += NR) { // nBegin is a multiple of NR
      Tile t;
      t.lda = lda;
      t.panel = g->packed + n0 / NR * panelBytes(g->k);
      t.pairs = pairs(g->k);
      t.wScale = g->wScale + n0;
      t.bias = g->bias ? g->bias + n0 : nullptr;
      t.ldc = g->ldc;
      t.cols = nEnd - n0 < NR ? nEnd - n0 : NR;
      for (int64_t i = i0; i < iEnd; i += MR) {
        const int64_t rows = iEnd - i < MR ? iEnd - i : MR;
        t.a = xq + i * lda;
        t.rowScale = g->rowScale + i;
        t.c = g->c + i * g->ldc + n0;
        kTiles[rows - 1][t.cols > 8](t);
      }
    }
  }
}

void gemm(const Int8GemmArgs *g, int64_t nBegin, int64_t nEnd) { run(g, 0, g->m, nBegin, nEnd); }
void gemmRows(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd) { run(g, rowBegin, rowEnd, 0, g->n); }

const Int8Table kTable = {"avx2", NR, packedWeightBytes, packWeights, activationBytes,
                          quantizeActivations, gemm, gemmRows, MR};

} // namespace

const Int8Table *table() { return &kTable; }

} // namespace lathe::cpu::int8avx2
