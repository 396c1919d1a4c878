// N:M sparse linear layers (SparseNm.h), AVX2 (-march=x86-64-v3).
//
// Up to 4 rows of x: each aligned 32-column block is two halves of 16
// columns holding 8 kept values each. A half's indices become lane numbers
// with one variable shift (and a mask and an or for 2:4); the 8 x values are
// gathered from the half's two ymm registers by two permutes and one blend
// (kept values 0–3 of a half always lie in its first 8 columns, 4–7 in the
// last 8, for 2:4 and 4:8 alike). int4 codes are expanded with the same
// shift; the scale is applied once per group to that group's partial sum.
//
// 5 to 64 rows: the same, x rows in groups of 4 under each pair of weight
// rows. More rows: panels of 16 output rows × 256 columns are decompressed
// into a dense [k][16] scratch (16 KiB) and multiplied by a 6×16 register tile.
//
// The bitmap (unstructured) format follows the same plan: see "bitmap" below.
#include "runtime/cpu/SparseNm.h"

#include <immintrin.h>

namespace lathe::cpu::nmavx2 {
namespace {

constexpr int VW = 8;
constexpr int NR = 16;       // prefill panel width, = panelWidth
constexpr int NV = NR / VW;
constexpr int MR = 6;        // prefill tile rows: 6 × 2 accumulators
constexpr int64_t KC = 256;
constexpr int GEMV_MAX_ROWS = 4;
// Up to this many rows, groups of 4 rows through the GEMV (about half the
// dense GEMM's speed at any m); more rows: decompressed panels (which only
// catch up at m ≈ 64 at SmolLM2 shapes, and reach 0.75x of dense at m = 256).
constexpr int64_t BATCHED_MAX_ROWS = 64;
// The GEMV prefetches (into L2) the weight rows of the tile(s) it will do
// next, at least this many bytes of values ahead: the hardware prefetchers
// alone, facing WR short streams a row apart, left it at half the bandwidth.
constexpr int64_t PREFETCH_MIN_BYTES = 2048;
// The bitmap GEMV's prefetch distance: 32 KiB reached ~23 GB/s at density
// 0.9 where 2 KiB stayed at ~18 (16 KiB between them).
constexpr int64_t BITMAP_PREFETCH_BYTES = 32768;

void prefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T1); }

typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));
vf load(const float *p) { return *(const vf *)p; }
void store(float *p, vf v) { *(vf *)p = v; }
vf splat(float s) { return s - (vf){}; }

float halfToFloat(uint16_t h) { return _cvtsh_ss(h); }

uint32_t load32(const uint8_t *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 8 x values that half h of block b's kept values multiply (lane j: kept
// value 8h + j of the block), from x's 16 columns xa (first 8) and xb.
template <int PATTERN>
__m256 gatherX(const uint8_t *rowIndices, int64_t b, int h, __m256 xa, __m256 xb) {
  __m256i lanes;
  if (PATTERN == 4) {
    // Kept value t at bits 2t of the block's word; its column within the half
    // modulo 8 is 4·((t / 2) % 2) + index (vpermps reads the low 3 bits only).
    const __m256i shift = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i base = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
    const __m256i words = _mm256_set1_epi32((int)(load32(rowIndices + 4 * b) >> (16 * h)));
    lanes = _mm256_or_si256(_mm256_and_si256(_mm256_srlv_epi32(words, shift), _mm256_set1_epi32(3)), base);
  } else {
    // Kept value t at bits 4t of the half's word; column modulo 8 = index.
    const __m256i shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    lanes = _mm256_srlv_epi32(_mm256_set1_epi32((int)load32(rowIndices + 8 * b + 4 * h)), shift);
  }
  return _mm256_blend_ps(_mm256_permutevar8x32_ps(xa, lanes), _mm256_permutevar8x32_ps(xb, lanes), 0xF0);
}

// q − 8 of half h of block b's int4 codes (kept value 8h + j in lane j).
__m256 codesMinus8(const uint8_t *rowCodes, int64_t b, int h) {
  const __m256i shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)load32(rowCodes + 8 * b + 4 * h)), shift),
                                     _mm256_set1_epi32(15));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8)));
}

template <int PATTERN, bool INT4, int XR, int WR>
void gemvTile(const NmArgs *a, int64_t j0) {
  const int64_t K = a->k, blocks = K / 32, indexBytes = PATTERN == 4 ? K / 8 : K / 4;
  __m256 acc[XR][WR];
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) acc[r][w] = _mm256_setzero_ps();
  const uint8_t *idx[WR];
  for (int w = 0; w < WR; ++w) idx[w] = a->indices + (j0 + w) * indexBytes;
  // Rows this far ahead (whole tiles) are prefetched while this tile runs:
  // their indices (and int4 codes and scales) now, their values block by block.
  const int64_t rowValueBytes = INT4 ? K / 4 : K * 2;
  const int64_t aheadRows = WR * ((PREFETCH_MIN_BYTES + WR * rowValueBytes - 1) / (WR * rowValueBytes));
  for (int64_t off = 0; off < WR * indexBytes; off += 64) prefetch(idx[0] + aheadRows * indexBytes + off);
  if (INT4) {
    const int64_t groups = (K + a->group - 1) / a->group;
    for (int64_t off = 0; off < WR * (K / 4); off += 64) prefetch(a->codes + (j0 + aheadRows) * (K / 4) + off);
    for (int64_t off = 0; off < WR * groups * 2; off += 64) prefetch(a->scales + (j0 + aheadRows) * groups + off / 2);
  }
  if (!INT4) {
    const float *val[WR];
    for (int w = 0; w < WR; ++w) val[w] = a->values + (j0 + w) * (K / 2);
    for (int64_t b = 0; b < blocks; ++b)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < WR; ++w) {
          if (h == 0) prefetch(val[w] + aheadRows * (K / 2) + 16 * b);
          const __m256 v = _mm256_loadu_ps(val[w] + 16 * b + 8 * h);
          for (int r = 0; r < XR; ++r) {
            const float *x = a->x + r * a->lda + 32 * b + 16 * h;
            const __m256 xs = gatherX<PATTERN>(idx[w], b, h, _mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
            acc[r][w] = _mm256_fmadd_ps(xs, v, acc[r][w]);
          }
        }
  } else {
    const int64_t G = a->group, groups = (K + G - 1) / G, groupBlocks = G / 32;
    const uint8_t *codes[WR];
    for (int w = 0; w < WR; ++w) codes[w] = a->codes + (j0 + w) * (K / 4);
    for (int64_t g = 0; g < groups; ++g) {
      __m256 s[XR][WR];
      for (int r = 0; r < XR; ++r)
        for (int w = 0; w < WR; ++w) s[r][w] = _mm256_setzero_ps();
      const int64_t bEnd = (g + 1) * groupBlocks < blocks ? (g + 1) * groupBlocks : blocks;
      for (int64_t b = g * groupBlocks; b < bEnd; ++b)
        for (int h = 0; h < 2; ++h)
          for (int w = 0; w < WR; ++w) {
            const __m256 q = codesMinus8(codes[w], b, h);
            for (int r = 0; r < XR; ++r) {
              const float *x = a->x + r * a->lda + 32 * b + 16 * h;
              const __m256 xs = gatherX<PATTERN>(idx[w], b, h, _mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
              s[r][w] = _mm256_fmadd_ps(xs, q, s[r][w]);
            }
          }
      for (int w = 0; w < WR; ++w) {
        const __m256 scale = _mm256_set1_ps(halfToFloat(a->scales[(j0 + w) * groups + g]));
        for (int r = 0; r < XR; ++r) acc[r][w] = _mm256_fmadd_ps(s[r][w], scale, acc[r][w]);
      }
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) a->c[r * a->ldc + j0 + w] = hsum(acc[r][w]) + (a->bias ? a->bias[j0 + w] : 0.0f);
}

template <int PATTERN, bool INT4, int XR>
void gemvRows(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  constexpr int WR = XR == 1 ? 4 : XR == 2 ? 2 : 1;
  int64_t j = nBegin;
  for (; j + WR <= nEnd; j += WR) gemvTile<PATTERN, INT4, XR, WR>(a, j);
  for (; j < nEnd; ++j) gemvTile<PATTERN, INT4, XR, 1>(a, j);
}

template <int PATTERN, bool INT4>
void gemvDispatch(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  switch (a->m) {
  case 1: return gemvRows<PATTERN, INT4, 1>(a, nBegin, nEnd);
  case 2: return gemvRows<PATTERN, INT4, 2>(a, nBegin, nEnd);
  case 3: return gemvRows<PATTERN, INT4, 3>(a, nBegin, nEnd);
  default: return gemvRows<PATTERN, INT4, 4>(a, nBegin, nEnd);
  }
}

// 5 .. BATCHED_MAX_ROWS rows of x: under each tile of WR weight rows (kept in
// L1), the x rows in groups of 4; each output is summed exactly as in the
// GEMV. Decompressing panels for the dense tile (prefill below) costs about
// 6 cycles per kept weight, which only pays off for many rows.
template <int PATTERN, bool INT4, int XR, int WR>
void gemvTileAt(const NmArgs *a, int64_t r0, int64_t j0) {
  NmArgs part = *a;
  part.x = a->x + r0 * a->lda;
  part.c = a->c + r0 * a->ldc;
  gemvTile<PATTERN, INT4, XR, WR>(&part, j0);
}
template <int PATTERN, bool INT4, int WR>
void batchedTile(const NmArgs *a, int64_t j0) {
  int64_t r = 0;
  for (; r + 4 <= a->m; r += 4) gemvTileAt<PATTERN, INT4, 4, WR>(a, r, j0);
  switch (a->m - r) {
  case 3: gemvTileAt<PATTERN, INT4, 3, WR>(a, r, j0); break;
  case 2: gemvTileAt<PATTERN, INT4, 2, WR>(a, r, j0); break;
  case 1: gemvTileAt<PATTERN, INT4, 1, WR>(a, r, j0); break;
  default: break;
  }
}
template <int PATTERN, bool INT4>
void gemvBatched(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  int64_t j = nBegin;
  for (; j + 2 <= nEnd; j += 2) batchedTile<PATTERN, INT4, 2>(a, j);
  for (; j < nEnd; ++j) batchedTile<PATTERN, INT4, 1>(a, j);
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

// C[rows, n0 .. n0 + cols) (=|+=) x[rows, k0 .. k0 + kb) · panel. `first`:
// start from bias (or 0) instead of C.
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
    if (cols == NR) {
      for (int v = 0; v < NV; ++v) store(c + r * ldc + v * VW, acc[r][v]);
    } else {
      float row[NR];
      for (int v = 0; v < NV; ++v) store(row + v * VW, acc[r][v]);
      for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = row[j];
    }
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
      for (; i + 2 <= a->m; i += 2) microTile<2>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i < a->m; ++i) microTile<1>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
    }
  }
}

void gemm(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  if (a->m <= 0 || nBegin >= nEnd) return;
  if (a->m > BATCHED_MAX_ROWS) return prefill(a, nBegin, nEnd);
  const bool int4 = a->codes != nullptr;
  if (a->m > GEMV_MAX_ROWS) {
    if (a->pattern == 4) return int4 ? gemvBatched<4, true>(a, nBegin, nEnd) : gemvBatched<4, false>(a, nBegin, nEnd);
    return int4 ? gemvBatched<8, true>(a, nBegin, nEnd) : gemvBatched<8, false>(a, nBegin, nEnd);
  }
  if (a->pattern == 4) return int4 ? gemvDispatch<4, true>(a, nBegin, nEnd) : gemvDispatch<4, false>(a, nBegin, nEnd);
  return int4 ? gemvDispatch<8, true>(a, nBegin, nEnd) : gemvDispatch<8, false>(a, nBegin, nEnd);
}

// ---------------------------------------------------------------- bitmap
// Batch 1 .. 64: no expand instruction, so per 8 columns of a weight row the
// next popcount(mask byte) kept values are loaded (the lanes beyond them
// zeroed; a masked load at the end of the tile's values, so nothing past
// them is read) and moved to their columns' lanes by one vpermps through a
// 256-entry table of lane numbers; a pruned column takes lane 7, which is
// one of the zeros whenever a column is pruned.

struct ExpandTable {
  int32_t lane[256][8];
  constexpr ExpandTable() : lane() {
    for (int m = 0; m < 256; ++m)
      for (int i = 0, rank = 0; i < 8; ++i) lane[m][i] = (m >> i & 1) ? rank++ : 7;
  }
};
alignas(32) constexpr ExpandTable kExpand;

uint64_t load64(const uint8_t *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

int64_t popcountBytes(const uint8_t *p, int64_t bytes) { // bytes: a multiple of 4
  int64_t bits = 0, i = 0;
  for (; i + 8 <= bytes; i += 8) bits += _mm_popcnt_u64(load64(p + i));
  if (i < bytes) bits += _mm_popcnt_u32(load32(p + i));
  return bits;
}

// The 8 weights of the columns whose kept bits are `byte`, from the next
// kept values at *val (advanced past them). Where 8 floats up to `end` may be
// read, a plain load and an and (a masked load, at every density, made the
// memory-bound GEMV ~1.3x slower); otherwise the masked load.
__m256 expand8(unsigned byte, const float *&val, const float *end) {
  const int count = _mm_popcnt_u32(byte);
  const __m256i first = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 packed = end - val >= 8 ? _mm256_and_ps(_mm256_loadu_ps(val), _mm256_castsi256_ps(first))
                                       : _mm256_maskload_ps(val, first);
  val += count;
  return _mm256_permutevar8x32_ps(packed, _mm256_load_si256((const __m256i *)kExpand.lane[byte]));
}

template <int XR, int WR>
const float *bitmapTile(const BitmapArgs *a, int64_t j0, const float *start) {
  const int64_t K = a->k, blocks = K / 32, maskBytes = K / 8;
  const uint8_t *mask[WR];
  const float *val[WR];
  for (int w = 0; w < WR; ++w) mask[w] = a->masks + (j0 + w) * maskBytes;
  val[0] = start;
  for (int w = 1; w < WR; ++w) val[w] = val[w - 1] + popcountBytes(mask[w - 1], maskBytes);
  const int64_t tileFloats = val[WR - 1] + popcountBytes(mask[WR - 1], maskBytes) - start;
  const float *end = start + tileFloats; // the tile's values: all inside `values`
  // Prefetch (into L2) BITMAP_PREFETCH_BYTES ahead, as the AVX-512 kernel does.
  const int64_t aheadTiles = tileFloats > 0 ? (BITMAP_PREFETCH_BYTES / 4 + tileFloats - 1) / tileFloats : 1;
  for (int64_t off = 0; off < WR * maskBytes; off += 64) prefetch(mask[0] + aheadTiles * WR * maskBytes + off);
  uintptr_t prefetched = ((uintptr_t)start + BITMAP_PREFETCH_BYTES) & ~uintptr_t(63);
  uintptr_t needed = (uintptr_t)start + BITMAP_PREFETCH_BYTES;
  __m256 acc[XR][WR];
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) acc[r][w] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t bits[WR];
    unsigned consumed = 0;
    for (int w = 0; w < WR; ++w) consumed += _mm_popcnt_u32(bits[w] = load32(mask[w] + 4 * b));
    for (needed += 4 * consumed; prefetched < needed; prefetched += 64) prefetch((const void *)prefetched);
    for (int w = 0; w < WR; ++w)
      for (int q = 0; q < 4; ++q) {
        const __m256 v = expand8(bits[w] >> (8 * q) & 0xFF, val[w], end);
        for (int r = 0; r < XR; ++r)
          acc[r][w] = _mm256_fmadd_ps(v, _mm256_loadu_ps(a->x + r * a->lda + 32 * b + 8 * q), acc[r][w]);
      }
  }
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) a->c[r * a->ldc + j0 + w] = hsum(acc[r][w]) + (a->bias ? a->bias[j0 + w] : 0.0f);
  return val[WR - 1];
}

template <int XR>
void bitmapRows(const BitmapArgs *a, int64_t nBegin, int64_t nEnd, const float *start) {
  constexpr int WR = XR == 1 ? 4 : XR == 2 ? 2 : 1;
  int64_t j = nBegin;
  for (; j + WR <= nEnd; j += WR) start = bitmapTile<XR, WR>(a, j, start);
  for (; j < nEnd; ++j) start = bitmapTile<XR, 1>(a, j, start);
}

template <int XR, int WR>
const float *bitmapTileAt(const BitmapArgs *a, int64_t r0, int64_t j0, const float *start) {
  BitmapArgs part = *a;
  part.x = a->x + r0 * a->lda;
  part.c = a->c + r0 * a->ldc;
  return bitmapTile<XR, WR>(&part, j0, start);
}
template <int WR>
const float *bitmapBatchedTile(const BitmapArgs *a, int64_t j0, const float *start) {
  const float *next = start;
  int64_t r = 0;
  for (; r + 4 <= a->m; r += 4) next = bitmapTileAt<4, WR>(a, r, j0, start);
  switch (a->m - r) {
  case 3: next = bitmapTileAt<3, WR>(a, r, j0, start); break;
  case 2: next = bitmapTileAt<2, WR>(a, r, j0, start); break;
  case 1: next = bitmapTileAt<1, WR>(a, r, j0, start); break;
  default: break;
  }
  return next;
}
void bitmapBatched(const BitmapArgs *a, int64_t nBegin, int64_t nEnd, const float *start) {
  int64_t j = nBegin;
  for (; j + 2 <= nEnd; j += 2) start = bitmapBatchedTile<2>(a, j, start);
  for (; j < nEnd; ++j) start = bitmapBatchedTile<1>(a, j, start);
}

// More rows: decompressed panels of NR weight rows × KC columns.
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
      for (int64_t c0 = k0; c0 < k0 + kb; c0 += 8)
        for (int64_t j = 0; j < cols; ++j) {
          alignas(32) float block[8];
          _mm256_store_ps(block, expand8(a->masks[(n0 + j) * maskBytes + c0 / 8], val[j], val[j]));
          float *out = panel + (c0 - k0) * NR + j;
          for (int u = 0; u < 8; ++u) out[u * NR] = block[u];
        }
      const int first = k0 == 0;
      const float *x = a->x + k0;
      float *c = a->c + n0;
      int64_t i = 0;
      for (; i + MR <= a->m; i += MR) microTile<MR>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i + 2 <= a->m; i += 2) microTile<2>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i < a->m; ++i) microTile<1>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
    }
  }
}

void bitmapGemm(const BitmapArgs *a, int64_t nBegin, int64_t nEnd) {
  if (a->m <= 0 || nBegin >= nEnd) return;
  const float *start = a->values + popcountBytes(a->masks, nBegin * (a->k / 8));
  if (a->m > BATCHED_MAX_ROWS) return bitmapPrefill(a, nBegin, nEnd, start);
  if (a->m > GEMV_MAX_ROWS) return bitmapBatched(a, nBegin, nEnd, start);
  switch (a->m) {
  case 1: return bitmapRows<1>(a, nBegin, nEnd, start);
  case 2: return bitmapRows<2>(a, nBegin, nEnd, start);
  case 3: return bitmapRows<3>(a, nBegin, nEnd, start);
  default: return bitmapRows<4>(a, nBegin, nEnd, start);
  }
}

const NmTable kTable = {"avx2", NR, gemm, bitmapGemm};

} // namespace

const NmTable *table() { return &kTable; }

} // namespace lathe::cpu::nmavx2
