// N:M sparse linear layers (SparseNm.h), AVX-512 (-march=x86-64-v4).
//
// Up to 4 rows of x: for each aligned 32-column block the 16 kept values of a
// weight row meet the 16 x values they multiply through one two-source
// permute of the block's x (two zmm registers, shared by the weight rows done
// together): the block's indices become 5-bit lane numbers with one variable
// shift and one ternary-logic op. int4 codes are shifted the same way and
// looked up (one vpermps) in a 16-entry table of scale·(q − 8), rebuilt per
// group, so dequantizing costs two ops per 16 weights.
//
// 5 to 64 rows: the same, x rows in groups of 4 under each pair of weight
// rows. More rows: panels of 32 output rows × 256 columns are decompressed
// into a dense [k][32] scratch (32 KiB) and multiplied by an 8×32 register tile.
//
// The bitmap (unstructured) format follows the same plan: see "bitmap" below.
#include "runtime/cpu/SparseNm.h"

#include <immintrin.h>

namespace lathe::cpu::nmavx512 {
namespace {

constexpr int VW = 16;             // floats per vector
constexpr int NR = 32;             // prefill panel width (output rows per panel), = panelWidth
constexpr int NV = NR / VW;
constexpr int MR = 8;              // prefill tile rows: 8 × 2 accumulators
constexpr int64_t KC = 256;        // prefill panel depth (columns): KC·NR floats = 32 KiB
constexpr int GEMV_MAX_ROWS = 4;
// Up to this many rows, groups of 4 rows through the GEMV (about half the
// dense GEMM's speed at any m); more rows: decompressed panels (which only
// catch up at m ≈ 64 at SmolLM2 shapes, and reach 0.75x of dense at m = 256).
constexpr int64_t BATCHED_MAX_ROWS = 64;
// The GEMV prefetches the weight rows of the tile(s) it will do next, at
// least this many bytes of values ahead: the hardware prefetchers alone,
// facing WR short streams a row apart, left it at half the bandwidth. Into L2
// (T1): prefetching into L1 (T0) stalled on L1's few miss buffers, at the
// same ~11 GB/s as no prefetching, where T1 reached the dense kernel's ~18.
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
uint64_t load64(const uint8_t *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

// Which kept value of a 32-column block (t in 0..15) each of the 16 lanes
// holds. f32 values load in order (lane j = t j). int4 codes are broadcast as
// one 64-bit word, so lane j sees 32-bit half j % 2 and takes t = 8·(j % 2) + j/2;
// the indices are decoded in the same lane order, so lanes still pair up.
int keptOfLane(int j, bool int4) { return int4 ? 8 * (j % 2) + j / 2 : j; }

// The constants that turn a block's indices into lane numbers 0..31 of x's
// block (column = (t / N)·M + index(t)).
struct Decode {
  __m512i shift, mask, base;
  __m512i codeShift; // int4: where lane j's nibble sits in its 32-bit half
};
Decode makeDecode(int pattern, bool int4) {
  alignas(64) int32_t shift[16], base[16], codeShift[16];
  for (int j = 0; j < 16; ++j) {
    const int t = keptOfLane(j, int4);
    if (pattern == 4) {
      shift[j] = 2 * t;            // M = 4: one 32-bit word for the block
      base[j] = 4 * (t / 2);
    } else {                       // M = 8: one 64-bit word, half t / 8
      shift[j] = 4 * (t % 8);
      base[j] = 8 * (t / 4);
    }
    codeShift[j] = 4 * (t % 8);
  }
  Decode d;
  d.shift = _mm512_load_si512(shift);
  d.base = _mm512_load_si512(base);
  d.mask = _mm512_set1_epi32(pattern == 4 ? 3 : 7);
  d.codeShift = _mm512_load_si512(codeShift);
  return d;
}

// Lane numbers (0..31) of block b's kept values in row `row`'s indices.
template <int PATTERN, bool INT4>
__m512i laneNumbers(const uint8_t *rowIndices, int64_t b, const Decode &d) {
  __m512i words;
  if (PATTERN == 4) {
    words = _mm512_set1_epi32((int)load32(rowIndices + 4 * b));
  } else if (INT4) {
    words = _mm512_set1_epi64((long long)load64(rowIndices + 8 * b)); // lane j: half j % 2
  } else {
    // Lanes 0–7 need the low 32 bits, lanes 8–15 the high ones.
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    words = _mm512_permutexvar_epi32(halves, _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(rowIndices + 8 * b))));
  }
  // (words >> shift) & mask | base: one ternary-logic op (A & B) | C.
  return _mm512_ternarylogic_epi32(_mm512_srlv_epi32(words, d.shift), d.mask, d.base, 0xEA);
}

// Block b's 16 int4 codes (in keptOfLane's int4 order) looked up in `table`
// (lane q: scale·(q − 8) of the row's current group): vpermps reads only the
// low 4 bits of each lane, so the shifted word needs no mask.
__m512 dequantize(const uint8_t *rowCodes, int64_t b, const Decode &d, __m512 table) {
  const __m512i words = _mm512_set1_epi64((long long)load64(rowCodes + 8 * b));
  return _mm512_permutexvar_ps(_mm512_srlv_epi32(words, d.codeShift), table);
}

// XR rows of x (≤ 4) against the WR weight rows j0 .. j0 + WR: one accumulator
// per (x row, weight row), reduced once at the end.
template <int PATTERN, bool INT4, int XR, int WR>
void gemvTile(const NmArgs *a, int64_t j0, const Decode &d) {
  const int64_t K = a->k, blocks = K / 32, indexBytes = PATTERN == 4 ? K / 8 : K / 4;
  __m512 acc[XR][WR];
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) acc[r][w] = _mm512_setzero_ps();
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
    for (int64_t b = 0; b < blocks; ++b) {
      __m512 x0[XR], x1[XR];
      for (int r = 0; r < XR; ++r) {
        x0[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b);
        x1[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b + 16);
      }
      // This block consumes WR lines of values and WR·(4 or 8) bytes of indices.
      for (int w = 0; w < WR; ++w) prefetch(val[w] + aheadRows * (K / 2) + 16 * b);
      for (int w = 0; w < WR; ++w) {
        const __m512i lanes = laneNumbers<PATTERN, false>(idx[w], b, d);
        const __m512 v = _mm512_loadu_ps(val[w] + 16 * b);
        for (int r = 0; r < XR; ++r) acc[r][w] = _mm512_fmadd_ps(_mm512_permutex2var_ps(x0[r], lanes, x1[r]), v, acc[r][w]);
      }
    }
  } else {
    const int64_t G = a->group, groups = (K + G - 1) / G, groupBlocks = G / 32;
    const uint8_t *codes[WR];
    for (int w = 0; w < WR; ++w) codes[w] = a->codes + (j0 + w) * (K / 4);
    const __m512 minus8 = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t g = 0; g < groups; ++g) {
      // scale·(q − 8) is exact in f32 (an 11-bit significand times at most 8).
      __m512 table[WR];
      for (int w = 0; w < WR; ++w) table[w] = _mm512_mul_ps(_mm512_set1_ps(halfToFloat(a->scales[(j0 + w) * groups + g])), minus8);
      const int64_t bEnd = (g + 1) * groupBlocks < blocks ? (g + 1) * groupBlocks : blocks;
      for (int64_t b = g * groupBlocks; b < bEnd; ++b) {
        __m512 x0[XR], x1[XR];
        for (int r = 0; r < XR; ++r) {
          x0[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b);
          x1[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b + 16);
        }
        for (int w = 0; w < WR; ++w) {
          const __m512i lanes = laneNumbers<PATTERN, true>(idx[w], b, d);
          const __m512 wv = dequantize(codes[w], b, d, table[w]);
          for (int r = 0; r < XR; ++r) acc[r][w] = _mm512_fmadd_ps(_mm512_permutex2var_ps(x0[r], lanes, x1[r]), wv, acc[r][w]);
        }
      }
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w)
      a->c[r * a->ldc + j0 + w] = _mm512_reduce_add_ps(acc[r][w]) + (a->bias ? a->bias[j0 + w] : 0.0f);
}

// Weight rows in tiles of WR (more rows for one x row: more independent
// streams in flight), the rest one at a time with the same per-row arithmetic.
template <int PATTERN, bool INT4, int XR>
void gemvRows(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  constexpr int WR = XR <= 2 ? 4 : 2; // 1, 2 and 8 measured no better for one row

  const Decode d = makeDecode(PATTERN, INT4);
  int64_t j = nBegin;
  for (; j + WR <= nEnd; j += WR) gemvTile<PATTERN, INT4, XR, WR>(a, j, d);
  for (; j < nEnd; ++j) gemvTile<PATTERN, INT4, XR, 1>(a, j, d);
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
void gemvTileAt(const NmArgs *a, int64_t r0, int64_t j0, const Decode &d) {
  NmArgs part = *a;
  part.x = a->x + r0 * a->lda;
  part.c = a->c + r0 * a->ldc;
  gemvTile<PATTERN, INT4, XR, WR>(&part, j0, d);
}
template <int PATTERN, bool INT4, int WR>
void batchedTile(const NmArgs *a, int64_t j0, const Decode &d) {
  int64_t r = 0;
  for (; r + 4 <= a->m; r += 4) gemvTileAt<PATTERN, INT4, 4, WR>(a, r, j0, d);
  switch (a->m - r) {
  case 3: gemvTileAt<PATTERN, INT4, 3, WR>(a, r, j0, d); break;
  case 2: gemvTileAt<PATTERN, INT4, 2, WR>(a, r, j0, d); break;
  case 1: gemvTileAt<PATTERN, INT4, 1, WR>(a, r, j0, d); break;
  default: break;
  }
}
template <int PATTERN, bool INT4>
void gemvBatched(const NmArgs *a, int64_t nBegin, int64_t nEnd) {
  const Decode d = makeDecode(PATTERN, INT4);
  int64_t j = nBegin;
  for (; j + 2 <= nEnd; j += 2) batchedTile<PATTERN, INT4, 2>(a, j, d);
  for (; j < nEnd; ++j) batchedTile<PATTERN, INT4, 1>(a, j, d);
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
      for (; i + 4 <= a->m; i += 4) microTile<4>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
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
// Batch 1 .. 64: per 32-column block of a weight row, each 16-bit half of its
// mask expands the half's next popcount kept values into their lanes (zeros
// elsewhere) with one expand-load, which meets the block's x (two zmm shared
// by the weight rows done together) in an FMA; the values pointer moves on by
// the popcount. One accumulator per half, per (x row, weight row).

// Set bits in `bytes` bytes of masks (a multiple of 4).
int64_t popcountBytes(const uint8_t *p, int64_t bytes) {
  int64_t bits = 0, i = 0;
  for (; i + 8 <= bytes; i += 8) bits += _mm_popcnt_u64(load64(p + i));
  if (i < bytes) bits += _mm_popcnt_u32(load32(p + i));
  return bits;
}

// XR rows of x (≤ 4) against weight rows j0 .. j0 + WR, whose values start at
// `start`; returns where the next row's values start.
template <int XR, int WR>
const float *bitmapTile(const BitmapArgs *a, int64_t j0, const float *start) {
  const int64_t K = a->k, blocks = K / 32, maskBytes = K / 8;
  const uint8_t *mask[WR];
  const float *val[WR];
  for (int w = 0; w < WR; ++w) mask[w] = a->masks + (j0 + w) * maskBytes;
  val[0] = start;
  for (int w = 1; w < WR; ++w) val[w] = val[w - 1] + popcountBytes(mask[w - 1], maskBytes);
  const int64_t tileFloats = val[WR - 1] + popcountBytes(mask[WR - 1], maskBytes) - start;
  // Prefetch (into L2) BITMAP_PREFETCH_BYTES ahead. The values of successive
  // tiles are one contiguous stream, so it is prefetched as one: line by line
  // as the tile's blocks consume it. (Per row, one or two lines a row's
  // stream ahead as the N:M GEMV does, was slower, and no prefetch at all
  // halved the bandwidth.) The masks of the rows as far ahead now.
  const int64_t aheadTiles = tileFloats > 0 ? (BITMAP_PREFETCH_BYTES / 4 + tileFloats - 1) / tileFloats : 1;
  for (int64_t off = 0; off < WR * maskBytes; off += 64) prefetch(mask[0] + aheadTiles * WR * maskBytes + off);
  uintptr_t prefetched = ((uintptr_t)start + BITMAP_PREFETCH_BYTES) & ~uintptr_t(63);
  uintptr_t needed = (uintptr_t)start + BITMAP_PREFETCH_BYTES;
  __m512 acc0[XR][WR], acc1[XR][WR];
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w) acc0[r][w] = acc1[r][w] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512 x0[XR], x1[XR];
    for (int r = 0; r < XR; ++r) {
      x0[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b);
      x1[r] = _mm512_loadu_ps(a->x + r * a->lda + 32 * b + 16);
    }
    uint32_t bits[WR];
    unsigned consumed = 0;
    for (int w = 0; w < WR; ++w) consumed += _mm_popcnt_u32(bits[w] = load32(mask[w] + 4 * b));
    for (needed += 4 * consumed; prefetched < needed; prefetched += 64) prefetch((const void *)prefetched);
    for (int w = 0; w < WR; ++w) {
      const __mmask16 lo = __mmask16(bits[w]), hi = __mmask16(bits[w] >> 16);
      const __m512 v0 = _mm512_maskz_expandloadu_ps(lo, val[w]);
      const float *next = val[w] + _mm_popcnt_u32(lo);
      const __m512 v1 = _mm512_maskz_expandloadu_ps(hi, next);
      val[w] = next + _mm_popcnt_u32(hi);
      for (int r = 0; r < XR; ++r) {
        acc0[r][w] = _mm512_fmadd_ps(v0, x0[r], acc0[r][w]);
        acc1[r][w] = _mm512_fmadd_ps(v1, x1[r], acc1[r][w]);
      }
    }
  }
  for (int r = 0; r < XR; ++r)
    for (int w = 0; w < WR; ++w)
      a->c[r * a->ldc + j0 + w] =
          _mm512_reduce_add_ps(_mm512_add_ps(acc0[r][w], acc1[r][w])) + (a->bias ? a->bias[j0 + w] : 0.0f);
  return val[WR - 1];
}

template <int XR>
void bitmapRows(const BitmapArgs *a, int64_t nBegin, int64_t nEnd, const float *start) {
  constexpr int WR = XR <= 2 ? 4 : 2;
  int64_t j = nBegin;
  for (; j + WR <= nEnd; j += WR) start = bitmapTile<XR, WR>(a, j, start);
  for (; j < nEnd; ++j) start = bitmapTile<XR, 1>(a, j, start);
}

// 5 .. BATCHED_MAX_ROWS rows: under each pair of weight rows (in L1 after the
// first group), the x rows in groups of 4, each output summed as in the GEMV.
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

// More rows: panels of NR weight rows × KC columns decompressed (each row's
// block expanded as above, then stored down the panel's column) and
// multiplied by the dense register tile.
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
      for (int64_t c0 = k0; c0 < k0 + kb; c0 += 32)
        for (int64_t j = 0; j < cols; ++j) {
          const uint32_t bits = load32(a->masks + (n0 + j) * maskBytes + c0 / 8);
          alignas(64) float block[32];
          _mm512_store_ps(block, _mm512_maskz_expandloadu_ps(__mmask16(bits), val[j]));
          val[j] += _mm_popcnt_u32(bits & 0xFFFF);
          _mm512_store_ps(block + 16, _mm512_maskz_expandloadu_ps(__mmask16(bits >> 16), val[j]));
          val[j] += _mm_popcnt_u32(bits >> 16);
          float *out = panel + (c0 - k0) * NR + j;
          for (int u = 0; u < 32; ++u) out[u * NR] = block[u];
        }
      const int first = k0 == 0;
      const float *x = a->x + k0;
      float *c = a->c + n0;
      int64_t i = 0;
      for (; i + MR <= a->m; i += MR) microTile<MR>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
      for (; i + 4 <= a->m; i += 4) microTile<4>(x + i * a->lda, a->lda, panel, kb, c + i * a->ldc, a->ldc, cols, first, bias);
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

const NmTable kTable = {"avx512", NR, gemm, bitmapGemm};

} // namespace

const NmTable *table() { return &kTable; }

} // namespace lathe::cpu::nmavx512
