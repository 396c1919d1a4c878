// The int8 GEMM in portable C++ (compiled with -march=x86-64): the definition
// in Int8Gemm.h written out as loops, for CPUs without AVX2.
//
// Packed weights: q itself, s8 [n, k] row-major (padded to 64 bytes).
// Activations: s8 rows of k.
//
// Only builtins, no standard-library inline functions: those could be emitted
// by an AVX-512 translation unit too and picked by the linker for this one.
#include "runtime/cpu/Int8Gemm.h"

namespace lathe::cpu::int8baseline {
namespace {

constexpr int64_t NR = 16; // any split works here; this keeps callers' chunks a few columns wide

int64_t packedWeightBytes(int64_t n, int64_t k) { return (n * k + 63) / 64 * 64; }

void packWeights(const int8_t *q, int64_t n, int64_t k, uint8_t *packed) {
  for (int64_t i = 0; i < n * k; ++i) packed[i] = uint8_t(q[i]);
}

int64_t activationBytes(int64_t m, int64_t k) { return m * k; }

void quantizeActivations(const float *x, int64_t lda, int64_t k, int64_t rowBegin, int64_t rowEnd,
                         const float *invScale, float tensorScale, void *xq, float *rowScale) {
  for (int64_t r = rowBegin; r < rowEnd; ++r) {
    const float *src = x + r * lda;
    int8_t *dst = static_cast<int8_t *>(xq) + r * k;
    float inv;
    if (invScale || tensorScale > 0) {
      rowScale[r] = tensorScale;
      inv = 1.0f / tensorScale;
    } else {
      float m = 0.0f;
      for (int64_t i = 0; i < k; ++i) m = __builtin_fabsf(src[i]) > m ? __builtin_fabsf(src[i]) : m;
      rowScale[r] = m / 127.0f;
      inv = m > 0 ? 127.0f / m : 0.0f; // a zero row quantizes to 0 through x·0
    }
    for (int64_t i = 0; i < k; ++i) {
      float v = __builtin_nearbyintf(src[i] * (invScale ? invScale[i] : inv));
      v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
      dst[i] = int8_t(v);
    }
  }
}

void run(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd, int64_t nBegin, int64_t nEnd) {
  const int8_t *xq = static_cast<const int8_t *>(g->xq);
  const int8_t *w = reinterpret_cast<const int8_t *>(g->packed);
  for (int64_t r = rowBegin; r < rowEnd; ++r)
    for (int64_t j = nBegin; j < nEnd; ++j) {
      int32_t acc = 0;
      for (int64_t i = 0; i < g->k; ++i) acc += int32_t(xq[r * g->k + i]) * int32_t(w[j * g->k + i]);
      float y = float(acc) * g->rowScale[r] * g->wScale[j];
      if (g->bias) y += g->bias[j];
      g->c[r * g->ldc + j] = y;
    }
}

void gemm(const Int8GemmArgs *g, int64_t nBegin, int64_t nEnd) { run(g, 0, g->m, nBegin, nEnd); }
void gemmRows(const Int8GemmArgs *g, int64_t rowBegin, int64_t rowEnd) { run(g, rowBegin, rowEnd, 0, g->n); }

const Int8Table kTable = {"baseline", NR, packedWeightBytes, packWeights, activationBytes,
                          quantizeActivations, gemm, gemmRows, 6};

} // namespace

const Int8Table *table() { return &kTable; }

} // namespace lathe::cpu::int8baseline
