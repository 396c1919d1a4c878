// The int8 GEMM on AMX (Sapphire Rapids and later; compiled with
// -march=x86-64-v4 -mamx-tile -mamx-int8). Chosen for the "avx512" level when
// the CPU has AMX-INT8 and the kernel grants the tile state (cpuHasAmxInt8).
//
// TDPBUSD multiplies a 16×64 tile of unsigned bytes by a 16(×4)×16 tile of
// signed bytes into a 16×16 int32 tile: 16 384 multiply-adds per instruction,
// 64 times what one vpdpbusd does. The arithmetic is the VNNI table's
// (Int8GemmVnni.cpp): activations u8 = q + 128, weights s8, each column minus
// 128·Σ_k w[j, k], exact int32 sums; the epilogue is the same expression in the
// same order, so the two tables give bit-identical outputs.
//
// Packed weights: the VNNI table's panels of 64 output columns,
//   [64 int32: 128·Σ_k w[j, k]] [groups: 64 columns × 4 consecutive k, s8]
// with k padded with zero weights to a multiple of 64 (one tile row of k);
// the VNNI tiles run on it too (int8vnni::gemmPadded), for the rows that do
// not fill an A tile.
// A group of 16 columns is then exactly one row of an AMX B tile: the tile for
// columns 16v..16v+15 and k chunk c starts at c·16 groups + 64v bytes, stride
// one group (256 bytes).
// Activations: u8 rows of k rounded up to 64 (padding 128, q = 0), and 32 rows
// more than asked, so a 32-row block at the end reads allocated bytes (rows are
// independent: padding rows only produce sums that are never stored).
#include "runtime/cpu/Int8Gemm.h"

#include <immintrin.h>

namespace lathe::cpu::int8amx {
namespace {

constexpr int64_t NR = 64;           // panel width: 4 B tiles of 16 columns
constexpr int64_t GROUP_BYTES = NR * 4;
constexpr int64_t KC = 64;           // k per tile (bytes of an A tile row)
constexpr int64_t MB = 32;           // rows per block: two A tiles

int64_t kPadded(int64_t k) { return (k + KC - 1) / KC * KC; }
int64_t panelBytes(int64_t k) { return NR * 4 + kPadded(k) / 4 * GROUP_BYTES; }

int64_t packedWeightBytes(int64_t n, int64_t k) { return (n + NR - 1) / NR * panelBytes(k); }

void packWeights(const int8_t *q, int64_t n, int64_t k, uint8_t *packed) { int8vnni::packPadded(q, n, k, kPadded(k), packed); }

int64_t activationBytes(int64_t m, int64_t k) { return (m + MB) * kPadded(k); }

__mmask16 tailMask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

// The VNNI table's quantization, into rows of kPadded(k).
void quantizeActivations(const float *x, int64_t lda, int64_t k, int64_t rowBegin, int64_t rowEnd,
                         const float *invScale, float tensorScale, void *xq, float *rowScale) {
  int8vnni::quantizePadded(x, lda, k, kPadded(k), rowBegin, rowEnd, invScale, tensorScale, xq, rowScale);
}

// Palette 1, tiles 0–7 all 16 rows × 64 bytes: 0–3 the int32 sums of a
// 32 × 32 block, 4–5 the two A tiles (rows), 6–7 the two B tiles (columns).
struct alignas(64) TileConfig {
  uint8_t palette = 1, startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// y = float(acc − 128·Σw) · rowScale · wScale (+ bias), the VNNI table's order
// (-ffp-contract=off), for `rows` rows and `cols` columns of a 32 × 32 block.
void epilogue(const int32_t *sums, const int32_t *corr, const float *rowScale, const float *wScale, const float *bias,
              float *c, int64_t ldc, int64_t rows, int64_t cols) {
  for (int v = 0; v < 2 && v * 16 < cols; ++v) {
    const __mmask16 mask = tailMask(cols - v * 16);
    const __m512i cv = _mm512_loadu_si512(corr + v * 16);
    const __m512 ws = _mm512_maskz_loadu_ps(mask, wScale + v * 16);
    const __m512 bs = bias ? _mm512_maskz_loadu_ps(mask, bias + v * 16) : _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t *row = sums + (r / 16 * 2 + v) * 256 + r % 16 * 16; // tile (r/16, v), its row r % 16
      __m512 y = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(row), cv));
      y = _mm512_mul_ps(_mm512_mul_ps(y, _mm512_set1_ps(rowScale[r])), ws);
      if (bias) y = _mm512_add_ps(y, bs);
      _mm512_mask_storeu_ps(c + r * ldc + v * 16, mask, y);
    }
  }
}

void run(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd) {
  if (rowBegin >= rowEnd || nBegin >= nEnd) return;
  // Fewer rows than an A tile holds (decoding, a range's last rows): the VNNI
  // tiles on this layout are faster there (measured: 2x at one row).
  const int64_t tail = (rowEnd - rowBegin) % MB;
  if (tail > 0 && tail < 16) {
    int8vnni::gemmPadded(g, rowEnd - tail, rowEnd, nBegin, nEnd, kPadded(g->k), panelBytes(g->k));
    rowEnd -= tail;
    if (rowBegin >= rowEnd) return;
  }
  static const TileConfig config;
  _tile_loadconfig(&config);
  const int64_t kp = kPadded(g->k), chunks = kp / KC;
  const uint8_t *xq = static_cast<const uint8_t *>(g->xq);
  alignas(64) int32_t sums[4 * 256];
  for (int64_t r0 = rowBegin; r0 < rowEnd; r0 += MB) {
    const int64_t rows = rowEnd - r0 < MB ? rowEnd - r0 : MB;
    const uint8_t *a0 = xq + r0 * kp, *a1 = a0 + 16 * kp;
    for (int64_t n0 = nBegin; n0 < nEnd; n0 += NR) { // nBegin is a multiple of NR
      const uint8_t *panel = g->packed + n0 / NR * panelBytes(g->k);
      const uint8_t *w = panel + NR * 4;
      const int64_t panelCols = nEnd - n0 < NR ? nEnd - n0 : NR;
      for (int64_t h = 0; h * 32 < panelCols; ++h) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        const uint8_t *b = w + h * 2 * 64;
        for (int64_t c = 0; c < chunks; ++c) {
          _tile_loadd(4, a0 + c * KC, kp);
          _tile_loadd(6, b + c * 16 * GROUP_BYTES, GROUP_BYTES);
          _tile_dpbusd(0, 4, 6);
          _tile_loadd(7, b + c * 16 * GROUP_BYTES + 64, GROUP_BYTES);
          _tile_dpbusd(1, 4, 7);
          _tile_loadd(5, a1 + c * KC, kp);
          _tile_dpbusd(2, 5, 6);
          _tile_dpbusd(3, 5, 7);
        }
        _tile_stored(0, sums, 64);
        _tile_stored(1, sums + 256, 64);
        _tile_stored(2, sums + 512, 64);
        _tile_stored(3, sums + 768, 64);
        const int64_t cols = panelCols - h * 32 < 32 ? panelCols - h * 32 : 32;
        epilogue(sums, reinterpret_cast<const int32_t *>(panel) + h * 32, g->rowScale + r0, g->wScale + n0 + h * 32,
                 g->bias ? g->bias + n0 + h * 32 : nullptr, g->c + r0 * g->ldc + n0 + h * 32, g->ldc, rows, cols);
      }
    }
  }
  _tile_release();
}

void gemm(const Int8GemmArgs *g, int64_t nBegin, int64_t nEnd) { run(g, 0, g->m, nBegin, nEnd); }
void gemmRows(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd) { run(g, rowBegin, rowEnd, 0, g->n); }

const Int8Table kTable = {"amx", NR, packedWeightBytes, packWeights, activationBytes,
                          quantizeActivations, gemm, gemmRows, MB};

} // namespace

const Int8Table *table() { return &kTable; }

} // namespace lathe::cpu::int8amx
