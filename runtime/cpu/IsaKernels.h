// The hot fp32 kernels, compiled once per instruction-set level
// (IsaKernelsBaseline.cpp, IsaKernelsAvx2.cpp, IsaKernelsAvx512.cpp, each
// including IsaKernels.inc in its own namespace with its own -march).
//
// This header is included by those translation units, so it must stay plain
// declarations: no inline functions, no templates, no member functions, no
// default member initializers. Any inline/template code shared between the
// variants could be emitted once with AVX-512 instructions and picked by the
// linker for the baseline path too (see BUILD-NOTES).
#pragma once

#include <stdint.h>

namespace lathe::cpu {

/// C[m, n] (=|+=) A[m, k] · B(k, n) (+ bias[n]) on the columns [nBegin, nEnd).
/// B is read as B[k*ldb + n] or, when bTransposed, as B[n*ldb + k] (a linear
/// layer's [out, in] weight). Each output element is summed in a fixed k
/// order, independent of how columns are split among threads.
struct GemmArgs {
  const float *a;
  int64_t lda;
  const float *b;
  int64_t ldb;
  int bTransposed;
  float *c;
  int64_t ldc;
  const float *bias; // may be null
  int64_t m, n, k;
  const float *packedB; // B pre-packed by IsaTable::packWeights (bTransposed layout), or null
};

/// Fused attention on rows r = ((b·H + h)·Sq + i) in [rowBegin, rowEnd):
/// online softmax over the keys, never materializing the score matrix.
/// Strides are in elements; maskStrides are 0 on broadcast dims.
struct AttentionArgs {
  const float *q, *k, *v;
  float *out;
  const float *mask; // additive, may be null
  int64_t qStrides[3], kStrides[3], vStrides[3], outStrides[3]; // batch, head, seq (head_dim contiguous)
  int64_t maskStrides[4];
  int64_t batch, heads, kvHeads, querySeq, keySeq, headDim;
  float scale;
  int causal;
  // Incremental decoding: keys and values already in the packed block layout
  // (IsaTable::packKvRow), one region of k/vPackedHeadFloats per (batch, kv
  // head); null: attention packs them from k and v itself. (Callers value-
  // initialize: this header has no default member initializers.)
  const float *kPacked, *vPacked;
  int64_t kPackedHeadFloats, vPackedHeadFloats;
};

/// A linear layer's weight in a compact format, for IsaTable::quantGemm:
///   QuantFormat::Int8: q is int8 [n, k]; W[i, j] = scale(i, j/group) · q
///   QuantFormat::Int4: q is uint8 [n, k/2] in ggml's nibble order (each 32-weight
///     block is 16 bytes: weight t in the low nibble of byte t, weight t+16 in the
///     high nibble); W = scale · q + min (mins given) or scale · (q - 8)
///   QuantFormat::Int3: q is uint8 [n, k·3/8]: each 32-weight block is 12 bytes,
///     bytes 0–7 the low two bits (byte j: weights j, j+8, j+16, j+24 at bits
///     0, 2, 4, 6), bytes 8–11 the high bits (bit t of the little-endian word:
///     weight t); W = scale · q + min (mins given) or scale · (q - 4)
///   QuantFormat::Bf16: q is bf16 [n, k]; no scales
///   QuantFormat::F16: q is IEEE half [n, k]; no scales
/// Scales and mins are f16 [n, ceil(k/group)]: groups of `group` weights along k,
/// the last one possibly shorter (k and group are multiples of 32 for Int4 and Int3).
enum class QuantFormat : int32_t { Int8 = 0, Int4 = 1, Bf16 = 2, Int3 = 3, F16 = 4 };
struct QuantArgs {
  QuantFormat format;
  const void *q;
  const uint16_t *scales, *mins;
  int64_t group;
  const float *a;
  int64_t lda;
  float *c;
  int64_t ldc;
  const float *bias; // may be null
  int64_t m, n, k;
  /// 0: f32 input. 32 (Int8 and Int4 only; Int8 groups a multiple of 32 or
  /// the whole row): the input quantized to int8 per block of 32 at run time
  /// (d = max|x|/127, q = rint(x/d)) and the products summed in integers.
  int64_t actBlock;
};

struct IsaTable {
  const char *name;
  int64_t gemmPanelWidth; // split the n range on multiples of this
  void (*gemm)(const GemmArgs *args, int64_t nBegin, int64_t nEnd);
  void (*attention)(const AttentionArgs *args, int64_t rowBegin, int64_t rowEnd);
  /// y = (x - mean)/sqrt(var + eps)·scale + bias per row of n (rms: x/sqrt(mean(x²)+eps)·scale).
  void (*normRows)(const float *x, const float *scale, const float *bias, float *y, int64_t rows, int64_t n, float epsilon, int rms);
  void (*softmaxRows)(const float *x, float *y, int64_t rows, int64_t n);
  void (*gelu)(const float *x, float *y, int64_t n, int tanhApproximation);
  void (*expf)(const float *x, float *y, int64_t n);
  /// Floats needed to pre-pack an [n, k] linear weight for this level's GEMM.
  int64_t (*packedWeightSize)(int64_t n, int64_t k);
  /// Packs w [n, k] once (at session open) so GEMM calls skip packing.
  void (*packWeights)(const float *w, int64_t n, int64_t k, float *packed);
  /// Floats of one (batch, kv head)'s packed key and value caches for `capacity`
  /// positions of head size D; both 0 when D is beyond the blocked attention.
  void (*packedKvSize)(int64_t capacity, int64_t D, int64_t *kFloats, int64_t *vFloats);
  /// Writes the key and value of cache position j into one head's packed caches.
  void (*packKvRow)(const float *key, const float *value, int64_t j, int64_t D, float *kHead, float *vHead);
  /// C[m, n] = A[m, k] · Wᵀ (+ bias) for a compact weight, on output columns
  /// [nBegin, nEnd) (split on multiples of gemmPanelWidth). Dequantization is
  /// fused: a few rows use dot products over the packed data; more rows
  /// dequantize one NR x KC panel at a time into the fp32 micro-kernel's layout.
  void (*quantGemm)(const QuantArgs *args, int64_t nBegin, int64_t nEnd);
  /// Rows [0, rows) of x (row stride lda) quantized to int8 per block of 32 by
  /// QuantArgs::actBlock's rule and widened back to d·q, into out [rows, k]:
  /// what quantGemm multiplies above GEMV_MAX_ROWS rows with int8 activations.
  void (*widenActRows)(const float *x, int64_t lda, int64_t rows, int64_t k, float *out);
};

namespace baseline { const IsaTable *table(); }
namespace avx2 { const IsaTable *table(); }
namespace avx512 { const IsaTable *table(); }

} // namespace lathe::cpu
