// N:M semi-structured sparse linear layers:
//
//   y[r, j] = Σ_c x[r, c] · W[j, c] + bias[j]      W [n, k], k a multiple of 32
//
// W is pruned N:M along k: in every group of M consecutive input columns of a
// row exactly N weights are kept. Two patterns, both keeping half a row:
//   pattern 4 (2:4) and pattern 8 (4:8); a row has k/2 kept values and every
//   aligned 32-column block of a row has exactly 16 of them.
//
// The layout (what the compiler writes; t counts a row's kept values in
// column order, 0 ≤ t < k/2):
//   values  f32 [n, k/2]      kept values in column order, or
//   codes   u8  [n, k/4]      int4: kept value t in byte t/2, the low nibble
//                             for even t, the high one for odd t;
//   scales  f16 [n, ceil(k/group)] (IEEE half, as uint16_t), group counted in
//                             ORIGINAL input columns (a positive multiple of 32,
//                             covering group/2 kept values); symmetric:
//                             ŵ = scale · (q − 8)
//   indices u8                the position of kept value t inside its M-group:
//       pattern 4: 2 bits each, at bits 2·(t % 4) of byte t/4 → [n, k/8] bytes
//       pattern 8: 4 bits each (0..7), byte t/2, low nibble for even t → [n, k/4]
//   so kept value t's original column is (t / N)·M + index(t).
//
// One table per instruction-set level (SparseNmAvx512.cpp: x86-64-v4,
// SparseNmAvx2.cpp: x86-64-v3, SparseNmBaseline.cpp: portable C++), each in
// its own translation unit with its own -march and namespace. Like
// IsaKernels.h this header stays plain declarations (no inline code, no
// templates) so no variant's code can be picked by the linker for another.
//
// gemm computes all m rows for output columns [nBegin, nEnd): up to 4 rows
// (AVX-512 and AVX2: up to 64, in groups of 4) by dot products straight from
// the compressed data, more rows by decompressing one panel of output rows at
// a time (at most 32 KiB of f32) into a dense scratch on the stack and
// multiplying it with every row. Each
// output element is summed in an order that depends on m, k and the pattern
// only, never on how [0, n) is split among threads.
#pragma once

#include <stdint.h>
#include <string>

namespace lathe::cpu {

// Unstructured ("bitmap") sparse linear layers, the same product with any
// number of zeros per row (k still a multiple of 32):
//   masks   u8  [n, k/8]   bit c % 8 of byte c / 8 of row r set when W[r, c]
//                          is kept (little-endian, so the 32-bit word at byte
//                          4·(c / 32) has bit c % 32 for column c);
//   values  f32 [nnz]      the kept values of row 0 in column order, then
//                          row 1, …; no row offsets are stored: row r starts
//                          at the popcount of rows [0, r)'s masks.
// bitmapGemm finds row nBegin's start by popcounting the masks before it
// (k/64 popcounts a row). Up to 4 rows of x (AVX-512 and AVX2: up to 64, in
// groups of 4) are computed straight from the compressed data, more rows
// through decompressed panels, as for N:M; each output is again summed in an
// order that depends on m, k and the mask only.
struct BitmapArgs {
  int64_t n, k, m;          // outputs, input features, rows of x
  const float *values;      // f32 [nnz]
  const uint8_t *masks;     // u8 [n, k/8]
  const float *x;           // [m, k], row stride lda
  int64_t lda;
  float *c;                 // [m, n], row stride ldc
  int64_t ldc;
  const float *bias;        // [n] or null
};

struct NmArgs {
  int64_t n, k, m;          // outputs, input features, rows of x
  int pattern;              // M: 4 (2:4) or 8 (4:8)
  const float *values;      // f32 format [n, k/2], or null
  const uint8_t *codes;     // int4 format [n, k/4], or null
  const uint16_t *scales;   // int4: f16 [n, ceil(k/group)]
  int64_t group;            // int4: original columns per scale
  const uint8_t *indices;   // [n, k/8] (pattern 4) or [n, k/4] (pattern 8)
  const float *x;           // [m, k], row stride lda
  int64_t lda;
  float *c;                 // [m, n], row stride ldc
  int64_t ldc;
  const float *bias;        // [n] or null
};

struct NmTable {
  const char *name;   // "avx512", "avx2", "baseline"
  int64_t panelWidth; // callers split [0, n) for gemm on multiples of this
  /// C[r, j] for all m rows and the output columns [nBegin, nEnd).
  void (*gemm)(const NmArgs *args, int64_t nBegin, int64_t nEnd);
  /// The same for the bitmap format (split [0, n) on multiples of panelWidth too).
  void (*bitmapGemm)(const BitmapArgs *args, int64_t nBegin, int64_t nEnd);
};

namespace nmavx512 { const NmTable *table(); }
namespace nmavx2 { const NmTable *table(); }
namespace nmbaseline { const NmTable *table(); }

/// The table for an ISA level ("avx512", "avx2", "baseline"), or null for an
/// unknown name or a level this CPU cannot run.
const NmTable *nmTableFor(const char *isaLevel);

/// Bytes of one row's indices: k/8 (pattern 4) or k/4 (pattern 8).
int64_t nmIndexBytesPerRow(int64_t k, int pattern);

/// Packs a dense row-major W [n, k] with a keep mask (1 = kept, exactly N per
/// M-group) into values f32 [n, k/2] and indices. Returns "" or a sentence
/// naming the problem (bad pattern, k not a multiple of 32, the wrong count
/// in group g of row r); on an error nothing useful is written.
std::string nmPackF32(const float *w, const uint8_t *keep, int64_t n, int64_t k, int pattern, float *values,
                      uint8_t *indices);

/// The same for int4: keptCodes gives the code (0..15) of each kept value,
/// one int per kept value in row/column order ([n, k/2]); they are packed
/// into codes u8 [n, k/4] (nibbles as above). Scales are not touched.
std::string nmPackInt4(const int32_t *keptCodes, const uint8_t *keep, int64_t n, int64_t k, int pattern,
                       uint8_t *codes, uint8_t *indices);

/// Bytes of one row's bitmap: k/8.
int64_t bitmapMaskBytesPerRow(int64_t k);

/// Packs a dense row-major W [n, k] (k a positive multiple of 32) into the
/// bitmap format: kept are the weights whose `keep` byte is nonzero, or, with
/// keep null, the nonzero weights (a kept zero is stored as a value). Writes
/// masks u8 [n, k/8], values (which must hold nnz floats; with values null
/// only *nnz is computed, and masks, when not null, written) and *nnz (when
/// not null). Returns "" or a sentence naming the problem; on an error
/// nothing is written.
std::string bitmapPack(const float *w, const uint8_t *keep, int64_t n, int64_t k, float *values, uint8_t *masks,
                       int64_t *nnz);

} // namespace lathe::cpu
