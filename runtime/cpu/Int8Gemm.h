// W8A8 linear layers: int8 weights (one scale per output channel) times int8
// activations, summed exactly in int32, dequantized in the epilogue:
//
//   y[r, j] = float(Σ_k xq[r, k] · wq[j, k]) · rowScale[r] · wScale[j] + bias[j]
//
// One table per instruction-set level (Int8GemmAmx.cpp: AMX-INT8 tiles, Int8GemmVnni.cpp: AVX-512 VNNI,
// Int8GemmAvx2.cpp: AVX2, Int8GemmBaseline.cpp: portable C++), each in its own
// translation unit with its own -march. Like IsaKernels.h this header stays
// plain declarations (no inline code, no templates) so no variant's code can
// be picked by the linker for another.
//
// Activation quantization (identical in every table, so every level gives
// bit-identical results):
//   dynamic (invScale null, tensorScale 0): per row r, m = max_k |x[r, k]|,
//       xq = clamp(nearbyint(x · (127 / m)), −127, 127), rowScale = m / 127
//       (a zero row: xq = 0, rowScale = 0);
//   static per tensor (invScale null, tensorScale s > 0):
//       xq = clamp(nearbyint(x · (1 / s)), −127, 127), rowScale = s;
//   static per channel (invScale [k], tensorScale s > 0):
//       xq = clamp(nearbyint(x[k] · invScale[k]), −127, 127), rowScale = s
//       (the compiler folded the per-channel scales into the weights).
// nearbyint rounds half to even (the default rounding mode); every product
// x · inv is a single f32 multiply.
#pragma once

#include <stdint.h>

namespace lathe::cpu {

struct Int8GemmArgs {
  const void *xq;        // activations in the table's layout (quantizeActivations), m rows
  const uint8_t *packed; // weights in the table's layout (packWeights)
  const float *rowScale; // [m]
  const float *wScale;   // [n]
  const float *bias;     // [n] or null
  float *c;              // [m, ldc]
  int64_t ldc;
  int64_t m, n, k;
};

struct Int8Table {
  const char *name;     // "amx", "avx512-vnni", "avx2", "baseline"
  int64_t panelWidth;   // callers split [0, n) for gemm on multiples of this
  /// Bytes of packWeights' layout for an [n, k] weight (64-byte aligned blocks).
  int64_t (*packedWeightBytes)(int64_t n, int64_t k);
  /// Packs q (int8 [n, k] row-major, values in [−127, 127]) once, at session open.
  void (*packWeights)(const int8_t *q, int64_t n, int64_t k, uint8_t *packed);
  /// Bytes of quantizeActivations' layout for m rows of k.
  int64_t (*activationBytes)(int64_t m, int64_t k);
  /// Quantizes rows [rowBegin, rowEnd) of x (f32, row stride lda, k columns)
  /// into xq (the layout for all m rows; each row range is written
  /// independently, so ranges can run on different threads) and rowScale.
  void (*quantizeActivations)(const float *x, int64_t lda, int64_t k, int64_t rowBegin, int64_t rowEnd,
                              const float *invScale, float tensorScale, void *xq, float *rowScale);
  /// C[r, j] for all m rows and the output columns [nBegin, nEnd).
  void (*gemm)(const Int8GemmArgs *args, int64_t nBegin, int64_t nEnd);
  /// The same on the rows [rowBegin, rowEnd) and all n columns (for few, wide outputs).
  void (*gemmRows)(const Int8GemmArgs *args, int64_t rowBegin, int64_t rowEnd);
  /// Rows per micro-tile: callers split rows for gemmRows on multiples of this.
  int64_t rowTile;
};

namespace int8amx { const Int8Table *table(); }
namespace int8vnni {
const Int8Table *table();
/// The VNNI quantization and tiles on a layout with extra zero k groups:
/// activation rows of `kp`/`lda` bytes (padding 128, q = 0) and weight panels
/// `panelStride` bytes apart (the AMX table's layout; its rows that fill less
/// than an AMX tile run on the VNNI tiles).
void packPadded(const int8_t *q, int64_t n, int64_t k, int64_t kp, uint8_t *packed);
void quantizePadded(const float *x, int64_t lda, int64_t k, int64_t kp, int64_t rowBegin, int64_t rowEnd,
                    const float *invScale, float tensorScale, void *xq, float *rowScale);
void gemmPadded(const Int8GemmArgs *args, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd, int64_t lda,
                int64_t panelStride);
} // namespace int8vnni
namespace int8avx2 { const Int8Table *table(); }
namespace int8baseline { const Int8Table *table(); }

/// The table for an ISA level ("avx512" → AMX when the CPU has AMX-INT8 and the
/// kernel grants the tile state, else VNNI when the CPU has AVX512-VNNI,
/// else AVX2; "avx2" → AVX2; "baseline" → portable), or null for an unknown name.
const Int8Table *int8TableFor(const char *isaLevel);

} // namespace lathe::cpu
