// Per-thread math of the CUDA graph kernels (GraphKernels.cu). Everything here
// compiles for the host and the device (LATHE_HD), so the unit tests
// (test/unit/CudaGraphMathTests.cpp) run the very formulas, index maps and
// reduction orders of the device kernels on the host and compare them with the
// CPU kernels. The formulas mirror runtime/cpu/Kernels.cpp and IsaKernels.inc.
//
// Plain C++ only (no CUDA headers): runtime/core/HalfFloat.h, <cstdint>, <cmath>.
#pragma once

#include "runtime/core/HalfFloat.h"

#include <cmath>
#include <cstdint>

namespace lathe::cuda::math {

constexpr int kMaxDims = 8;       // tensors of higher rank (after coalescing) run on the host
constexpr int kWarp = 32;
constexpr float kNegInf = -INFINITY;

// ------------------------------------------------------------------ dtypes
/// Codes of artifact::DType (static_assert'ed in GraphKernels.cu).
enum ElemType : int { F32 = 0, F16 = 1, BF16 = 2, F64 = 3, I64 = 4, I32 = 5, I16 = 6, I8 = 7, U8 = 8, Bool = 9 };

LATHE_HD int elemSize(int t) {
  switch (t) {
  case F32: case I32: return 4;
  case F16: case BF16: case I16: return 2;
  case F64: case I64: return 8;
  default: return 1;
  }
}

using numeric::bf16ToFloat;
using numeric::bitsFloat;
using numeric::floatBits;
using numeric::floatToBf16;
using numeric::floatToHalf;
using numeric::halfToFloat;

/// Element i of an integer tensor (any int dtype, bool) as int64 (the CPU's readIndex).
LATHE_HD int64_t readIndex(const void *data, int t, int64_t i) {
  switch (t) {
  case I64: return static_cast<const int64_t *>(data)[i];
  case I32: return static_cast<const int32_t *>(data)[i];
  case I16: return static_cast<const int16_t *>(data)[i];
  case I8: return static_cast<const int8_t *>(data)[i];
  case U8: case Bool: return static_cast<const uint8_t *>(data)[i];
  default: return 0;
  }
}
LATHE_HD bool isFloatType(int t) { return t == F32 || t == F64 || t == F16 || t == BF16; }

/// The CPU's loadAsDouble / storeDouble / storeInt (cast, fill, range, positions).
LATHE_HD double loadAsDouble(const void *p, int t, int64_t i) {
  switch (t) {
  case F32: return static_cast<const float *>(p)[i];
  case F64: return static_cast<const double *>(p)[i];
  case F16: return halfToFloat(static_cast<const uint16_t *>(p)[i]);
  case BF16: return bf16ToFloat(static_cast<const uint16_t *>(p)[i]);
  case Bool: return static_cast<const uint8_t *>(p)[i] ? 1 : 0;
  default: return double(readIndex(p, t, i));
  }
}
LATHE_HD bool finiteDouble(double v) { return v == v && v - v == 0.0; }
LATHE_HD void storeDouble(void *p, int t, int64_t i, double v) {
  const bool fin = finiteDouble(v);
  switch (t) {
  case F32: static_cast<float *>(p)[i] = float(v); break;
  case F64: static_cast<double *>(p)[i] = v; break;
  case F16: static_cast<uint16_t *>(p)[i] = floatToHalf(float(v)); break;
  case BF16: static_cast<uint16_t *>(p)[i] = floatToBf16(float(v)); break;
  case Bool: static_cast<uint8_t *>(p)[i] = v != 0; break;
  case I64: static_cast<int64_t *>(p)[i] = fin ? int64_t(v) : 0; break;
  case I32: static_cast<int32_t *>(p)[i] = fin ? int32_t(int64_t(v)) : 0; break;
  case I16: static_cast<int16_t *>(p)[i] = fin ? int16_t(int64_t(v)) : 0; break;
  case I8: static_cast<int8_t *>(p)[i] = fin ? int8_t(int64_t(v)) : 0; break;
  case U8: static_cast<uint8_t *>(p)[i] = fin ? uint8_t(int64_t(v)) : 0; break;
  default: break;
  }
}
LATHE_HD void storeInt(void *p, int t, int64_t i, int64_t v) {
  switch (t) {
  case I64: static_cast<int64_t *>(p)[i] = v; break;
  case I32: static_cast<int32_t *>(p)[i] = int32_t(v); break;
  case I16: static_cast<int16_t *>(p)[i] = int16_t(v); break;
  case I8: static_cast<int8_t *>(p)[i] = int8_t(v); break;
  case U8: static_cast<uint8_t *>(p)[i] = uint8_t(v); break;
  case Bool: static_cast<uint8_t *>(p)[i] = v != 0; break;
  default: storeDouble(p, t, i, double(v));
  }
}
/// One element of `cast` (the CPU's runCast, element by element; equal dtypes are a copy).
LATHE_HD void castElement(const void *x, int from, void *y, int to, int64_t i) {
  if (!isFloatType(from) && !isFloatType(to))
    storeInt(y, to, i, from == Bool ? int64_t(static_cast<const uint8_t *>(x)[i] != 0) : readIndex(x, from, i));
  else if (from == F32 && to == F16)
    static_cast<uint16_t *>(y)[i] = floatToHalf(static_cast<const float *>(x)[i]);
  else
    storeDouble(y, to, i, loadAsDouble(x, from, i));
}

// ------------------------------------------------------------------ scalar functions
LATHE_HD float fmaxf2(float a, float b) { return a > b ? a : b; } // the CPU's fmax (NaN in b wins)

/// exp(x): the CPU's fastExp (Cephes polynomial, ~2 ulp), used wherever the CPU uses it.
LATHE_HD float fastExp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f; // round to nearest
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * r * r + r + 1.0f;
  return y * bitsFloat(uint32_t((int32_t(n) + 127) << 23));
}
LATHE_HD float fastTanh(float z) {
  z = z < -9.0f ? -9.0f : (z > 9.0f ? 9.0f : z);
  return 1.0f - 2.0f / (fastExp(2.0f * z) + 1.0f);
}
/// The CPU's GELU (IsaKernels.inc gelu): erf(z) = z·P(z²)/Q(z²) on |z| <= 4, the
/// degree-5/5 rational fit of scripts/dev/fit_erf.py. The CPU divides by a refined
/// reciprocal estimate of its ISA level; this is the correctly rounded division.
LATHE_HD float geluErf(float v) {
  float z = v * 0.70710678118654752f;
  z = z > 4.0f ? 4.0f : (z < -4.0f ? -4.0f : z);
  const float t = z * z;
  const float p = ((((1.9776135e-6f * t + 2.8755757e-4f) * t + 3.984266e-3f) * t + 5.3407498e-2f) * t + 0.19580442f) * t + 1.128379f;
  const float q = ((((3.7484406e-5f * t + 1.2115716e-3f) * t + 1.5405642e-2f) * t + 0.11629159f) * t + 0.5068584f) * t + 1.0f;
  return 0.5f * v * (1.0f + z * p / q);
}
LATHE_HD float geluTanh(float v) { return 0.5f * v * (1.0f + fastTanh(0.7978845608028654f * (v + 0.044715f * v * v * v))); }

// ------------------------------------------------------------------ rotary
/// Products and sums rounded one by one, as the CPU's separate kernels round
/// them (nvcc would otherwise contract a·b + c into one FMA).
#if defined(LATHE_DEVICE_BRANCH)
__device__ inline float mulRn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float addRn(float a, float b) { return __fadd_rn(a, b); }
#else
inline float mulRn(float a, float b) { return a * b; }
inline float addRn(float a, float b) { return a + b; }
#endif
/// One pair (j, j + D/2) of a rotary row (the CPU's runRotary): a = x[j], b = x[j + D/2].
LATHE_HD void rotaryPair(float a, float b, float cosLo, float cosHi, float sinLo, float sinHi, float &yLo, float &yHi) {
  yLo = addRn(mulRn(a, cosLo), mulRn(-b, sinLo));
  yHi = addRn(mulRn(b, cosHi), mulRn(a, sinHi));
}
/// Offset of row `row` of x [dims..., D] into cos/sin, from the per-dim strides of
/// the table broadcast to x's leading dims (rank - 1 of them).
LATHE_HD int64_t rotaryTableOffset(const int64_t *leading, const int64_t *strides, int dims, int64_t row) {
  int64_t off = 0;
  for (int d = dims - 1; d >= 0; --d) {
    off += row % leading[d] * strides[d];
    row /= leading[d];
  }
  return off;
}

// ------------------------------------------------------------------ elementwise ops
/// The CPU's unaryOps(), in its enum order; kUnaryNames[op] is the op mnemonic.
enum UnaryOp : int { UIdentity, USqrt, UErf, UTanh, UExp, ULog, UCos, USin, URelu, USigmoid, USilu, UNeg, UAbs, UReciprocal, UNot, kUnaryCount };
inline constexpr const char *kUnaryNames[kUnaryCount] = {"identity", "sqrt", "erf", "tanh", "exp", "log", "cos", "sin",
                                                         "relu", "sigmoid", "silu", "neg", "abs", "reciprocal", "not"};
enum BinaryOp : int { BAdd, BSub, BMul, BDiv, BPow, BMax, BMin, BAnd, BOr, BEqual, BLess, BLessEqual, BGreater, BGreaterEqual, kBinaryCount };
inline constexpr const char *kBinaryNames[kBinaryCount] = {"add", "sub", "mul", "div", "pow", "max", "min", "and", "or",
                                                           "equal", "less", "less_equal", "greater", "greater_equal"};
LATHE_HD bool isCompare(int op) { return op >= BEqual; }

/// f32 (and f16/bf16 widened to f32, as viaFloat32 does): exp is the CPU's fastExp (isa->expf).
LATHE_HD float unaryFloat(int op, float x) {
  switch (op) {
  case USqrt: return sqrtf(x);
  case UErf: return erff(x);
  case UTanh: return tanhf(x);
  case UExp: return fastExp(x);
  case ULog: return logf(x);
  case UCos: return cosf(x);
  case USin: return sinf(x);
  case URelu: return x > 0.0f ? x : 0.0f;
  case USigmoid: return 1.0f / (1.0f + expf(-x));
  case USilu: return x / (1.0f + expf(-x));
  case UNeg: return -x;
  case UAbs: return x < 0.0f ? -x : x;
  case UReciprocal: return 1.0f / x;
  default: return x;
  }
}
/// Integer operands: through double, as the CPU's applyUnary.
template <class T> LATHE_HD T unaryInt(int op, T x) {
  double d = double(x);
  switch (op) {
  case USqrt: return T(sqrt(d));
  case UErf: return T(erf(d));
  case UTanh: return T(tanh(d));
  case UExp: return T(exp(d));
  case ULog: return T(log(d));
  case UCos: return T(cos(d));
  case USin: return T(sin(d));
  case URelu: return x > T(0) ? x : T(0);
  case USigmoid: return T(1.0 / (1.0 + exp(-d)));
  case USilu: return T(d / (1.0 + exp(-d)));
  case UNeg: return T(-x);
  case UAbs: return x < T(0) ? T(-x) : x;
  case UReciprocal: return T(1.0 / d);
  case UNot: return T(!x);
  default: return x;
  }
}
/// Arithmetic (not compare) binary ops on floats or integers (integer div is not here: the host checks /0).
template <class T> LATHE_HD T binaryArith(int op, T x, T z) {
  switch (op) {
  case BAdd: return T(x + z);
  case BSub: return T(x - z);
  case BMul: return T(x * z);
  case BDiv: return T(x / z);
  case BPow: return T(pow(double(x), double(z)));
  case BMax: return x > z || x != x ? x : z;
  case BMin: return x < z || x != x ? x : z;
  default: return x;
  }
}
template <class T> LATHE_HD bool binaryCompare(int op, T x, T z) {
  switch (op) {
  case BEqual: return x == z;
  case BLess: return x < z;
  case BLessEqual: return x <= z;
  case BGreater: return x > z;
  case BGreaterEqual: return x >= z;
  default: return false;
  }
}
LATHE_HD bool binaryBool(int op, bool x, bool z) { return op == BAnd ? (x && z) : op == BOr ? (x || z) : (x == z); }

// ------------------------------------------------------------------ index maps
/// An output shape (row-major, contiguous) and the element strides of up to
/// three operands into it (0 on broadcast dims): out[i] reads operand k at
/// offsets(i)[k]. Transpose/slice/expand use one operand; binary two; where three.
/// (No default member initializers: it may live in __shared__ memory; value-initialize it: IndexMap m{}.)
struct IndexMap {
  int rank, operands;
  int64_t shape[kMaxDims];
  int64_t strides[3][kMaxDims];
};

LATHE_HD void contiguousStrides(const int64_t *shape, int rank, int64_t *strides) {
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; --d) { strides[d] = s; s *= shape[d]; }
}
/// The CPU's broadcastStrides: `shape` aligned right against `out`, 0 on broadcast dims.
LATHE_HD void broadcastStrides(const int64_t *shape, int rank, const int64_t *out, int outRank, int64_t *strides) {
  int64_t own[kMaxDims];
  contiguousStrides(shape, rank, own);
  const int off = outRank - rank;
  for (int d = 0; d < off; ++d) strides[d] = 0;
  for (int d = 0; d < rank; ++d) strides[off + d] = shape[d] == 1 && out[off + d] != 1 ? 0 : own[d];
}
/// Merges adjacent dims that every operand walks contiguously and drops dims of
/// size 1, so most maps end up 1- or 2-D (fewer divisions per element). The
/// offsets the map gives are unchanged.
LATHE_HD void coalesce(IndexMap &m) {
  int64_t sh[kMaxDims], st[3][kMaxDims];
  int n = 0; // built innermost first
  for (int d = m.rank - 1; d >= 0; --d) {
    if (m.shape[d] == 1) continue;
    bool merge = n > 0;
    for (int k = 0; k < m.operands && merge; ++k) merge = m.strides[k][d] == st[k][n - 1] * sh[n - 1];
    if (merge) { sh[n - 1] *= m.shape[d]; continue; }
    sh[n] = m.shape[d];
    for (int k = 0; k < m.operands; ++k) st[k][n] = m.strides[k][d];
    ++n;
  }
  m.rank = n;
  for (int i = 0; i < n; ++i) {
    m.shape[i] = sh[n - 1 - i];
    for (int k = 0; k < m.operands; ++k) m.strides[k][i] = st[k][n - 1 - i];
  }
}
/// The map of an elementwise op: each operand (shape, rank) broadcast into the
/// output shape, then coalesced. False when a rank exceeds kMaxDims or an
/// operand has more dims than the output.
LATHE_HD bool broadcastMap(const int64_t *outShape, int outRank, const int64_t *const *shapes, const int *ranks, int operands,
                           IndexMap &m) {
  if (outRank > kMaxDims || operands > 3) return false;
  m.rank = outRank;
  m.operands = operands;
  for (int d = 0; d < outRank; ++d) m.shape[d] = outShape[d];
  for (int k = 0; k < operands; ++k) {
    if (ranks[k] > outRank) return false;
    broadcastStrides(shapes[k], ranks[k], outShape, outRank, m.strides[k]);
  }
  coalesce(m);
  return true;
}
/// Operand offsets of output element `linear`.
LATHE_HD void mapOffsets(const IndexMap &m, int64_t linear, int64_t *offsets) {
  for (int k = 0; k < m.operands; ++k) offsets[k] = 0;
  for (int d = m.rank - 1; d >= 0; --d) {
    const int64_t extent = m.shape[d], idx = linear % extent;
    linear /= extent;
    for (int k = 0; k < m.operands; ++k) offsets[k] += idx * m.strides[k][d];
  }
}
LATHE_HD int64_t mapOffset(const IndexMap &m, int64_t linear) {
  int64_t off = 0;
  for (int d = m.rank - 1; d >= 0; --d) {
    const int64_t extent = m.shape[d], idx = linear % extent;
    linear /= extent;
    off += idx * m.strides[0][d];
  }
  return off;
}

/// Slice parameters (the CPU's sliceParams), computed from the starts/ends/axes/steps
/// operands wherever they live (the device kernels compute them on the device).
struct SliceArgs {
  int rank, count; // count: entries of starts/ends/axes/steps
  int64_t inShape[kMaxDims];
  const void *starts, *ends, *axes, *steps; // axes/steps may be null
  int startsType, endsType, axesType, stepsType;
};
/// start/step per input dim; false when the operands are invalid (the shape function rejects those first).
LATHE_HD bool sliceStartsSteps(const SliceArgs &a, int64_t *start, int64_t *step) {
  for (int d = 0; d < a.rank; ++d) { start[d] = 0; step[d] = 1; }
  for (int i = 0; i < a.count; ++i) {
    int64_t ax = a.axes ? readIndex(a.axes, a.axesType, i) : i;
    if (ax < 0) ax += a.rank;
    if (ax < 0 || ax >= a.rank) return false;
    const int64_t dim = a.inShape[ax], st = a.steps ? readIndex(a.steps, a.stepsType, i) : 1;
    int64_t s = readIndex(a.starts, a.startsType, i), e = readIndex(a.ends, a.endsType, i);
    if (st == 0) return false;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (st > 0) {
      s = s < 0 ? 0 : (s > dim ? dim : s);
      e = e < 0 ? 0 : (e > dim ? dim : e);
    } else {
      s = s < 0 ? 0 : (s > dim - 1 ? dim - 1 : s);
      e = e < -1 ? -1 : (e > dim - 1 ? dim - 1 : e);
    }
    const int64_t len = st > 0 ? (e > s ? (e - s + st - 1) / st : 0) : (s > e ? (s - e + (-st) - 1) / (-st) : 0);
    start[ax] = len ? s : 0;
    step[ax] = st;
  }
  return true;
}
/// The gather map of a slice: one operand, strides own·step; `base` receives Σ start·own.
LATHE_HD void sliceMap(const SliceArgs &a, const int64_t *start, const int64_t *step, const int64_t *outShape, IndexMap &m,
                       int64_t &base) {
  int64_t own[kMaxDims];
  contiguousStrides(a.inShape, a.rank, own);
  m.rank = a.rank;
  m.operands = 1;
  base = 0;
  for (int d = 0; d < a.rank; ++d) {
    m.shape[d] = outShape[d];
    m.strides[0][d] = own[d] * step[d];
    base += start[d] * own[d];
  }
}
/// Transpose: output dim i walks input dim perm[i].
LATHE_HD void transposeMap(const int64_t *inShape, int rank, const int64_t *perm, IndexMap &m) {
  int64_t own[kMaxDims];
  contiguousStrides(inShape, rank, own);
  m.rank = rank;
  m.operands = 1;
  for (int i = 0; i < rank; ++i) {
    int64_t p = perm[i] < 0 ? perm[i] + rank : perm[i];
    m.shape[i] = inShape[p];
    m.strides[0][i] = own[p];
  }
}
/// Concat/split: element e of a part [outer, len·inner] lies at this offset of
/// the whole [outer, total·inner] (part starts at `at`·inner within each row).
LATHE_HD int64_t joinOffset(int64_t e, int64_t partRow, int64_t wholeRow, int64_t atElems) {
  const int64_t o = e / partRow, r = e - o * partRow;
  return o * wholeRow + atElems + r;
}
/// Gather along an axis: output element e of [outer, n, inner] reads input offset
/// (o·dim + j)·inner + r with j = idx[i] (negative counts from the end); -1 when out of range.
LATHE_HD int64_t gatherOffset(int64_t e, int64_t n, int64_t inner, int64_t dim, const void *idx, int idxType) {
  const int64_t r = e % inner, oi = e / inner, i = oi % n, o = oi / n;
  int64_t j = readIndex(idx, idxType, i);
  if (j < 0) j += dim;
  if (j < 0 || j >= dim) return -1;
  return (o * dim + j) * inner + r;
}
/// trilu: element (i, j) of each matrix is kept when j - i >= k (upper) or <= k (lower).
LATHE_HD bool triluKeep(int64_t e, int64_t cols, int64_t rows, int64_t k, bool upper) {
  const int64_t j = e % cols, i = (e / cols) % rows;
  return upper ? j - i >= k : j - i <= k;
}

// ------------------------------------------------------------------ reductions (device tree order)
/// A warp's butterfly (shfl_xor 16, 8, 4, 2, 1: lane l adds lane l^o): on the
/// host, emulated on 32 values in place; lane 0's result is returned (every lane ends equal).
template <class T, class Combine> LATHE_HD T emulateWarpButterfly(T *v, Combine combine) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    T next[kWarp];
    for (int l = 0; l < kWarp; ++l) next[l] = combine(v[l], v[l ^ o]);
    for (int l = 0; l < kWarp; ++l) v[l] = next[l];
  }
  return v[0];
}
/// The device's blockReduce: per-warp butterflies, then warp 0 butterflies the
/// warp results (`identity` padding lanes past the warp count). `threads` is a multiple of 32, <= 1024.
template <class T, class Combine> LATHE_HD T emulateBlockReduce(const T *partials, int threads, T identity, Combine combine) {
  T warpResult[kWarp];
  const int warps = threads / kWarp;
  for (int w = 0; w < kWarp; ++w) warpResult[w] = identity;
  for (int w = 0; w < warps; ++w) {
    T lanes[kWarp];
    for (int l = 0; l < kWarp; ++l) lanes[l] = partials[w * kWarp + l];
    warpResult[w] = emulateWarpButterfly(lanes, combine);
  }
  return emulateWarpButterfly(warpResult, combine);
}
struct SumOp { template <class T> LATHE_HD T operator()(T a, T b) const { return a + b; } };
struct MaxOp { template <class T> LATHE_HD T operator()(T a, T b) const { return a < b ? b : a; } }; // std::max
struct MinOp { template <class T> LATHE_HD T operator()(T a, T b) const { return b < a ? b : a; } }; // std::min

// layer_norm / rms_norm: one block per row; thread t sums elements t, t+T, ... in order,
// the block reduces (emulateBlockReduce order), twice: the mean (layer_norm), then squares.
LATHE_HD float normPartialSum(const float *row, int64_t n, int t, int threads) {
  float s = 0.0f;
  for (int64_t j = t; j < n; j += threads) s += row[j];
  return s;
}
LATHE_HD float normPartialSquares(const float *row, int64_t n, int t, int threads, float mean) {
  float s = 0.0f;
  for (int64_t j = t; j < n; j += threads) { const float d = row[j] - mean; s += d * d; }
  return s;
}
LATHE_HD float normInvStd(float squares, int64_t n, float epsilon) { return 1.0f / sqrtf(squares / float(n) + epsilon); }
LATHE_HD float normApply(float x, float mean, float inv, float scale, const float *bias, int64_t j) {
  const float y = (x - mean) * inv * scale;
  return bias ? y + bias[j] : y;
}

/// Softmax over a row in one pass: a running (max, sum of exp(x - max)) per
/// thread, combined along the block tree; -inf entries weigh exactly 0.
struct MaxSum {
  float max, sum;
};
LATHE_HD float rescale(float d) { return d < -87.0f ? 0.0f : fastExp(d); } // exp(d), d <= 0; exactly 1 at 0
LATHE_HD MaxSum softmaxIdentity() { return MaxSum{kNegInf, 0.0f}; }
LATHE_HD MaxSum softmaxAccumulate(MaxSum a, float x) {
  if (x == kNegInf) return a;
  if (x > a.max) return MaxSum{x, a.sum * rescale(a.max - x) + 1.0f};
  return MaxSum{a.max, a.sum + fastExp(x - a.max)};
}
LATHE_HD MaxSum softmaxCombine(MaxSum a, MaxSum b) {
  const float m = fmaxf2(a.max, b.max);
  if (m == kNegInf) return MaxSum{m, 0.0f};
  return MaxSum{m, a.sum * rescale(a.max - m) + b.sum * rescale(b.max - m)};
}
struct SoftmaxCombineOp { LATHE_HD MaxSum operator()(MaxSum a, MaxSum b) const { return softmaxCombine(a, b); } };
LATHE_HD float softmaxInv(float sum) { return sum > 0.0f ? 1.0f / sum : 0.0f; }
LATHE_HD float softmaxOutput(float x, MaxSum row, float inv) { return x == kNegInf ? 0.0f : fastExp(x - row.max) * inv; }

// ------------------------------------------------------------------ attention
constexpr int kAttnThreads = 128;  // 4 warps
constexpr int kAttnRows = 16;      // query rows per block (over the GQA group's heads × queries)
constexpr int kAttnKeys = 32;      // keys per shared-memory tile (one per lane in the softmax step)
constexpr int kAttnMaxDim = 256;
constexpr int kAttnAcc = kAttnRows * kAttnMaxDim / kAttnThreads; // accumulators per thread

struct AttentionParams {
  const float *q, *k, *v;
  float *out;
  const float *mask; // additive, may be null
  int64_t qStrides[3], kStrides[3], vStrides[3], outStrides[3]; // batch, head, seq (head_dim contiguous)
  int64_t maskStrides[4];
  int64_t batch, heads, kvHeads, querySeq, keySeq, headDim;
  float scale;
  int causal;
};
/// Keys [0, limit) are visible to query i (the CPU's rule: causal counts from the end of the keys).
LATHE_HD int64_t attentionKeyLimit(const AttentionParams &p, int64_t i) {
  if (!p.causal) return p.keySeq;
  const int64_t last = i + (p.keySeq - p.querySeq);
  return last + 1 < 0 ? 0 : (last + 1 < p.keySeq ? last + 1 : p.keySeq);
}
/// Block rows: row ρ of kv head hk covers query head hk·group + ρ / querySeq, query ρ % querySeq.
LATHE_HD void attentionRow(const AttentionParams &p, int64_t hk, int64_t rho, int64_t &h, int64_t &i) {
  const int64_t group = p.heads / p.kvHeads;
  h = hk * group + rho / p.querySeq;
  i = rho % p.querySeq;
}
LATHE_HD float dotSequential(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}
LATHE_HD float attentionScore(float dot, float scale, const float *mask, int64_t maskOffset) {
  const float s = dot * scale;
  return mask ? s + mask[maskOffset] : s;
}
LATHE_HD int64_t attentionMaskOffset(const AttentionParams &p, int64_t b, int64_t h, int64_t i, int64_t j) {
  return b * p.maskStrides[0] + h * p.maskStrides[1] + i * p.maskStrides[2] + j * p.maskStrides[3];
}
/// Online softmax step of one row for one key tile (as the CPU's attentionBlock):
/// newMax = max(running, tile); weights w = exp(s - newMax) (0 below -87: masked
/// keys); sum = sum·c + Σw; acc = acc·c + Σ w·v with c = exp(running - newMax).
/// A tile with nothing visible so far (newMax = -inf) leaves everything (c = 1, w = 0).
LATHE_HD float onlineNewMax(float runningMax, float tileMax) { return fmaxf2(runningMax, tileMax); }
LATHE_HD float onlineCorrection(float runningMax, float newMax) {
  if (newMax == kNegInf) return 1.0f;
  return runningMax == kNegInf ? 0.0f : rescale(runningMax - newMax);
}
LATHE_HD float onlineWeight(float score, float newMax) {
  if (newMax == kNegInf) return 0.0f;
  const float x = score - newMax;
  return x < -87.0f ? 0.0f : fastExp(x);
}
LATHE_HD float onlineSum(float runningSum, float correction, float tileSum) { return runningSum * correction + tileSum; }
/// Σ_j w[j]·v[j·vStride] over one tile, in key order.
LATHE_HD float weightedValues(const float *w, const float *v, int64_t vStride, int n) {
  float s = 0.0f;
  for (int j = 0; j < n; ++j) s += w[j] * v[j * vStride];
  return s;
}
LATHE_HD float onlineAccumulate(float acc, float correction, float tileValues) { return acc * correction + tileValues; }
LATHE_HD float attentionFinalInv(float runningSum) { return runningSum > 0.0f ? 1.0f / runningSum : 0.0f; }

} // namespace lathe::cuda::math
