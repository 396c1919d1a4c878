// CUDA kernels for every graph op except linear/matmul (LinearKernels.cu):
// elementwise (broadcasting), cast, normalization, softmax, gelu, rotary, embedding,
// data movement, reductions and fused attention (online softmax over key
// tiles in shared memory, with the plain-layout KV cache).
//
// Shapes were resolved by the CPU shape functions; each kernel only launches
// work on env.stream (no synchronization, no allocation). The per-thread math
// (formulas, index maps, reduction orders) lives in GraphMath.h, which the
// host unit tests run against the CPU kernels. What a kernel does not handle
// (a dtype, a rank, a layout) its check reports, and that node runs on the host.
#include "runtime/artifact/Attributes.h"
#include "runtime/cuda/CudaBackend.h"
#include "runtime/cuda/GraphMath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace lathe::cuda {
namespace {

namespace gm = lathe::cuda::math;
using artifact::ArtifactSpec;
using artifact::AttrValue;
using artifact::DType;
using artifact::KernelSpec;
using cpu::KernelContext;
using cpu::View;

static_assert(int(DType::F32) == gm::F32 && int(DType::F16) == gm::F16 && int(DType::BF16) == gm::BF16 &&
                  int(DType::F64) == gm::F64 && int(DType::I64) == gm::I64 && int(DType::I32) == gm::I32 &&
                  int(DType::I16) == gm::I16 && int(DType::I8) == gm::I8 && int(DType::U8) == gm::U8 &&
                  int(DType::Bool) == gm::Bool,
              "GraphMath.h's ElemType codes must be artifact::DType's");

constexpr int kThreads = 256;

// ------------------------------------------------------------------ host helpers
int code(DType t) { return int(t); }
const char *typeName(DType t) {
  static const char *names[] = {"f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"};
  return unsigned(t) < 10 ? names[unsigned(t)] : "?";
}
int64_t numel(const View &v) {
  int64_t n = 1;
  for (int64_t d : v.shape) n *= d;
  return n;
}
size_t bytesOf(const View &v) { return size_t(numel(v)) * size_t(gm::elemSize(code(v.dtype))); }
std::string fail(const KernelContext &c, const std::string &msg) {
  return "node '" + c.spec->source + "' (" + c.spec->op + "): " + msg;
}
const View *input(const KernelContext &c, size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; }

using artifact::floatAttr;
using artifact::intAttr;
using artifact::intsAttr;
using artifact::stringAttr;
bool normAxis(int64_t &axis, int64_t rank) {
  if (axis < 0) axis += rank;
  return axis >= 0 && axis < rank;
}

unsigned gridFor(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20))); // grid-stride beyond
}

/// Calls f(E{}) with an unsigned type of `size` bytes (moves of any dtype).
template <class F> bool bySize(int size, F &&f) {
  switch (size) {
  case 1: f(uint8_t{}); return true;
  case 2: f(uint16_t{}); return true;
  case 4: f(uint32_t{}); return true;
  case 8: f(uint64_t{}); return true;
  default: return false;
  }
}

// ----- spec-side helpers for the checks
bool present(const KernelSpec &k, size_t i) { return i < k.inputs.size() && k.inputs[i] >= 0; }
DType inType(const ArtifactSpec &s, const KernelSpec &k, size_t i) { return s.tensors[size_t(k.inputs[i])].dtype; }
size_t inRank(const ArtifactSpec &s, const KernelSpec &k, size_t i) { return s.tensors[size_t(k.inputs[i])].shape.size(); }
size_t outRank(const ArtifactSpec &s, const KernelSpec &k, size_t i) { return s.tensors[size_t(k.outputs[i])].shape.size(); }
bool isHalfOrFloat(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
bool isIndexType(DType t) {
  return t == DType::I64 || t == DType::I32 || t == DType::I16 || t == DType::I8 || t == DType::U8;
}
std::string onHost(DType t, const char *what = "operands") { return std::string(typeName(t)) + " " + what + ": runs on the host"; }
std::string rankCheck(const ArtifactSpec &s, const KernelSpec &k) {
  for (size_t i = 0; i < k.inputs.size(); ++i)
    if (present(k, i) && inRank(s, k, i) > size_t(gm::kMaxDims)) return "rank above 8: runs on the host";
  for (size_t i = 0; i < k.outputs.size(); ++i)
    if (outRank(s, k, i) > size_t(gm::kMaxDims)) return "rank above 8: runs on the host";
  return "";
}
std::string allFloat32(const ArtifactSpec &s, const KernelSpec &k) {
  for (size_t i = 0; i < k.inputs.size(); ++i)
    if (present(k, i) && inType(s, k, i) != DType::F32) return onHost(inType(s, k, i));
  return "";
}

// ------------------------------------------------------------------ device helpers
#define GRID_STRIDE(i, n)                                                                                \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride_ = int64_t(gridDim.x) * blockDim.x; \
       i < (n); i += stride_)

struct HalfS { uint16_t bits; };
struct Bf16S { uint16_t bits; };
__device__ __forceinline__ float load(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const HalfS *p, int64_t i) { return gm::halfToFloat(p[i].bits); }
__device__ __forceinline__ float load(const Bf16S *p, int64_t i) { return gm::bf16ToFloat(p[i].bits); }
__device__ __forceinline__ void store(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(HalfS *p, int64_t i, float v) { p[i].bits = gm::floatToHalf(v); }
__device__ __forceinline__ void store(Bf16S *p, int64_t i, float v) { p[i].bits = gm::floatToBf16(v); }

__device__ __forceinline__ float shflXor(float v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ double shflXor(double v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ long long shflXor(long long v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ gm::MaxSum shflXor(gm::MaxSum v, int o) {
  return gm::MaxSum{__shfl_xor_sync(0xffffffffu, v.max, o), __shfl_xor_sync(0xffffffffu, v.sum, o)};
}
/// lane l combines with lane l^o for o = 16..1 (GraphMath.h's emulateWarpButterfly).
template <class T, class Op> __device__ __forceinline__ T warpButterfly(T v, Op op) {
#pragma unroll
  for (int o = gm::kWarp / 2; o > 0; o /= 2) v = op(v, shflXor(v, o));
  return v;
}
/// GraphMath.h's emulateBlockReduce; every thread gets the result. blockDim.x: a multiple of 32.
template <class T, class Op> __device__ T blockReduce(T v, Op op, T identity, T *shared /* 32 entries */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warpButterfly(v, op);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? shared[lane] : identity;
    w = warpButterfly(w, op);
    if (lane == 0) shared[0] = w;
  }
  __syncthreads();
  const T result = shared[0];
  __syncthreads(); // shared may be reused right after
  return result;
}

// ------------------------------------------------------------------ elementwise kernels
template <class S> __global__ void unaryFloatKernel(const S *x, S *y, int op, int64_t n) {
  GRID_STRIDE(i, n) store(y, i, gm::unaryFloat(op, load(x, i)));
}
template <class T> __global__ void unaryIntKernel(const T *x, T *y, int op, int64_t n) {
  GRID_STRIDE(i, n) y[i] = gm::unaryInt<T>(op, x[i]);
}
__global__ void notKernel(const uint8_t *x, uint8_t *y, int64_t n) { GRID_STRIDE(i, n) y[i] = !x[i]; }
__global__ void geluKernel(const float *x, float *y, int64_t n, int tanhApprox) {
  GRID_STRIDE(i, n) y[i] = tanhApprox ? gm::geluTanh(x[i]) : gm::geluErf(x[i]);
}

/// rotary: thread i takes pair (i % half) of row (i / half), read then written
/// (so y may be x); cos/sin rows from the broadcast strides of x's leading dims.
struct RotaryArgs {
  const float *x, *cos, *sin;
  float *y;
  int64_t rows, half;
  int dims;
  int64_t leading[gm::kMaxDims], strides[gm::kMaxDims];
};
__global__ void rotaryKernel(RotaryArgs a) {
  GRID_STRIDE(i, a.rows * a.half) {
    const int64_t row = i / a.half, j = i % a.half, base = row * 2 * a.half;
    const int64_t off = gm::rotaryTableOffset(a.leading, a.strides, a.dims, row);
    float lo, hi;
    gm::rotaryPair(a.x[base + j], a.x[base + j + a.half], a.cos[off + j], a.cos[off + j + a.half], a.sin[off + j],
                   a.sin[off + j + a.half], lo, hi);
    a.y[base + j] = lo;
    a.y[base + j + a.half] = hi;
  }
}

template <class S> __global__ void binaryFloatKernel(const S *a, const S *b, void *y, gm::IndexMap m, int op, int64_t n) {
  const bool compare = gm::isCompare(op);
  GRID_STRIDE(i, n) {
    int64_t off[3];
    gm::mapOffsets(m, i, off);
    const float x = load(a, off[0]), z = load(b, off[1]);
    if (compare) static_cast<uint8_t *>(y)[i] = gm::binaryCompare(op, x, z);
    else store(static_cast<S *>(y), i, gm::binaryArith(op, x, z));
  }
}
template <class T> __global__ void binaryIntKernel(const T *a, const T *b, void *y, gm::IndexMap m, int op, int64_t n) {
  const bool compare = gm::isCompare(op);
  GRID_STRIDE(i, n) {
    int64_t off[3];
    gm::mapOffsets(m, i, off);
    const T x = a[off[0]], z = b[off[1]];
    if (compare) static_cast<uint8_t *>(y)[i] = gm::binaryCompare(op, x, z);
    else static_cast<T *>(y)[i] = gm::binaryArith(op, x, z);
  }
}
__global__ void binaryBoolKernel(const uint8_t *a, const uint8_t *b, uint8_t *y, gm::IndexMap m, int op, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t off[3];
    gm::mapOffsets(m, i, off);
    y[i] = gm::binaryBool(op, a[off[0]] != 0, b[off[1]] != 0);
  }
}
template <class E> __global__ void whereKernel(const uint8_t *cond, const E *a, const E *b, E *y, gm::IndexMap m, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t off[3];
    gm::mapOffsets(m, i, off);
    y[i] = cond[off[0]] ? a[off[1]] : b[off[2]];
  }
}
__global__ void castKernel(const void *x, int from, void *y, int to, int64_t n) {
  GRID_STRIDE(i, n) gm::castElement(x, from, y, to, i);
}

// ------------------------------------------------------------------ rows: norm, softmax
__global__ void __launch_bounds__(kThreads) normKernel(const float *x, const float *scale, const float *bias, float *y, int64_t n,
                                                       float epsilon, int rms) {
  __shared__ float shared[32];
  const float *xr = x + int64_t(blockIdx.x) * n;
  float *yr = y + int64_t(blockIdx.x) * n;
  const int t = threadIdx.x, threads = blockDim.x;
  float mean = 0.0f;
  if (!rms) mean = blockReduce(gm::normPartialSum(xr, n, t, threads), gm::SumOp{}, 0.0f, shared) / float(n);
  const float squares = blockReduce(gm::normPartialSquares(xr, n, t, threads, mean), gm::SumOp{}, 0.0f, shared);
  const float inv = gm::normInvStd(squares, n, epsilon);
  for (int64_t j = t; j < n; j += threads) yr[j] = gm::normApply(xr[j], mean, inv, scale[j], bias, j);
}

__global__ void __launch_bounds__(kThreads) softmaxRowKernel(const float *x, float *y, int64_t n) {
  __shared__ gm::MaxSum shared[32];
  const float *xr = x + int64_t(blockIdx.x) * n;
  float *yr = y + int64_t(blockIdx.x) * n;
  gm::MaxSum acc = gm::softmaxIdentity();
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc = gm::softmaxAccumulate(acc, xr[j]);
  const gm::MaxSum row = blockReduce(acc, gm::SoftmaxCombineOp{}, gm::softmaxIdentity(), shared);
  const float inv = gm::softmaxInv(row.sum);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = gm::softmaxOutput(xr[j], row, inv);
}
/// Softmax over a non-last axis: one thread per (outer, inner) column, as the CPU's strided path.
__global__ void softmaxColumnKernel(const float *x, float *y, int64_t outer, int64_t n, int64_t inner) {
  GRID_STRIDE(c, outer * inner) {
    const int64_t o = c / inner, i = c - o * inner;
    const float *xr = x + o * n * inner + i;
    float *yr = y + o * n * inner + i;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = fmaxf(mx, xr[j * inner]);
    if (mx == -INFINITY) mx = 0.0f;
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float e = expf(xr[j * inner] - mx);
      yr[j * inner] = e;
      sum += e;
    }
    for (int64_t j = 0; j < n; ++j) yr[j * inner] = float(yr[j * inner] / sum);
  }
}

// ------------------------------------------------------------------ lookups and moves
template <class E> __global__ void embeddingKernel(const E *table, const void *ids, int idsType, E *out, int64_t vocab, int64_t dim, int64_t n) {
  GRID_STRIDE(e, n) {
    const int64_t i = e / dim, c = e - i * dim, id = gm::readIndex(ids, idsType, i);
    out[e] = id >= 0 && id < vocab ? table[id * dim + c] : E(0); // the host rejects bad ids; here they read zeros
  }
}
__global__ void embeddingInt8Kernel(const int8_t *q, const void *ids, int idsType, const uint16_t *scales, float *out, int64_t rows,
                                    int64_t dim, int64_t group, int64_t groups, int64_t n) {
  GRID_STRIDE(e, n) {
    const int64_t i = e / dim, j = e - i * dim, id = gm::readIndex(ids, idsType, i);
    out[e] = id >= 0 && id < rows ? gm::halfToFloat(scales[id * groups + j / group]) * float(q[id * dim + j]) : 0.0f;
  }
}
__global__ void positionsKernel(void *y, int type, int64_t n, int64_t offset) { GRID_STRIDE(i, n) gm::storeInt(y, type, i, i + offset); }
template <class E> __global__ void copyMapKernel(const E *src, E *dst, gm::IndexMap m, int64_t base, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = src[base + gm::mapOffset(m, i)];
}
/// Slice: the starts/ends/axes/steps operands are read on the device (thread 0 of each block).
template <class E> __global__ void sliceKernel(const E *src, E *dst, gm::SliceArgs a, gm::IndexMap outShape, int64_t n) {
  __shared__ gm::IndexMap m;
  __shared__ int64_t base;
  __shared__ int ok;
  if (threadIdx.x == 0) {
    int64_t start[gm::kMaxDims], step[gm::kMaxDims];
    ok = gm::sliceStartsSteps(a, start, step);
    if (ok) {
      gm::sliceMap(a, start, step, outShape.shape, m, base);
      gm::coalesce(m);
    }
  }
  __syncthreads();
  if (!ok) return;
  GRID_STRIDE(i, n) dst[i] = src[base + gm::mapOffset(m, i)];
}
/// Concat (toWhole) or split: moves one part [outer, partRow] to or from the whole [outer, wholeRow].
template <class E> __global__ void joinKernel(const E *src, E *dst, int64_t partRow, int64_t wholeRow, int64_t at, int64_t n, int toWhole) {
  GRID_STRIDE(e, n) {
    const int64_t w = gm::joinOffset(e, partRow, wholeRow, at);
    if (toWhole) dst[w] = src[e];
    else dst[e] = src[w];
  }
}
template <class E> __global__ void gatherKernel(const E *src, const void *idx, int idxType, E *dst, int64_t count, int64_t inner, int64_t dim, int64_t n) {
  GRID_STRIDE(e, n) {
    const int64_t off = gm::gatherOffset(e, count, inner, dim, idx, idxType);
    dst[e] = off >= 0 ? src[off] : E(0); // the host rejects bad indices; here they read zeros
  }
}
template <class E> __global__ void triluKernel(const E *x, E *y, int64_t rows, int64_t cols, const void *kp, int kType, int upper, int64_t n) {
  const int64_t k = kp ? gm::readIndex(kp, kType, 0) : 0;
  GRID_STRIDE(e, n) y[e] = gm::triluKeep(e, cols, rows, k, upper != 0) ? x[e] : E(0);
}
__global__ void fillKernel(void *y, int type, int64_t n, double value) { GRID_STRIDE(i, n) gm::storeDouble(y, type, i, value); }
__global__ void rangeKernel(const void *start, int startType, const void *delta, int deltaType, void *y, int type, int64_t n) {
  const double s = gm::loadAsDouble(start, startType, 0), d = gm::loadAsDouble(delta, deltaType, 0);
  GRID_STRIDE(i, n) {
    if (!gm::isFloatType(type)) gm::storeInt(y, type, i, int64_t(s) + i * int64_t(d));
    else gm::storeDouble(y, type, i, s + double(i) * d);
  }
}
struct Dims {
  int64_t d[gm::kMaxDims];
};
__global__ void shapeOfKernel(void *y, int type, Dims dims, int rank) {
  if (int(threadIdx.x) < rank) gm::storeInt(y, type, int64_t(threadIdx.x), dims.d[threadIdx.x]);
}
/// scatter_nd: thread s owns element s of every slice and walks the tuples in order
/// (a repeated index keeps the last update, as on the host).
template <class E> __global__ void scatterNdKernel(const void *idx, int idxType, const E *upd, E *y, gm::IndexMap data, int64_t k,
                                                   int64_t tuples, int64_t slice) {
  GRID_STRIDE(s, slice) {
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      bool ok = true;
      for (int64_t d = 0; d < k; ++d) {
        int64_t i = gm::readIndex(idx, idxType, t * k + d);
        const int64_t dim = data.shape[d];
        if (i < 0) i += dim;
        ok = ok && i >= 0 && i < dim;
        off += i * data.strides[0][d];
      }
      if (ok) y[off + s] = upd[t * slice + s];
    }
  }
}

// ------------------------------------------------------------------ reductions
// loads/stores for the integer reductions (accumulated in int64) and the f64-accumulated float ones
__device__ __forceinline__ long long load(const long long *p, int64_t i) { return p[i]; }
__device__ __forceinline__ long long load(const int *p, int64_t i) { return p[i]; }
__device__ __forceinline__ void store(float *p, int64_t i, double v) { p[i] = float(v); }
__device__ __forceinline__ void store(HalfS *p, int64_t i, double v) { p[i].bits = gm::floatToHalf(float(v)); }
__device__ __forceinline__ void store(Bf16S *p, int64_t i, double v) { p[i].bits = gm::floatToBf16(float(v)); }
__device__ __forceinline__ void store(long long *p, int64_t i, long long v) { p[i] = v; }
__device__ __forceinline__ void store(int *p, int64_t i, long long v) { p[i] = int(v); }
/// One warp per output element: lanes stride over the reduced elements, then a butterfly.
template <class S, class Acc, class Out>
__global__ void __launch_bounds__(kThreads) reduceKernel(const S *x, Out *y, gm::IndexMap kept, gm::IndexMap reduced, int64_t count,
                                                         int kind, int64_t outputs, Acc init) {
  const int lane = threadIdx.x & 31;
  const int64_t warpsTotal = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t o = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); o < outputs; o += warpsTotal) {
    const int64_t base = gm::mapOffset(kept, o);
    Acc acc = init;
    for (int64_t r = lane; r < count; r += 32) {
      const Acc v = Acc(load(x, base + gm::mapOffset(reduced, r)));
      acc = kind == 1 ? gm::MaxOp{}(acc, v) : kind == 2 ? gm::MinOp{}(acc, v) : acc + v;
    }
    if (kind == 1) acc = warpButterfly(acc, gm::MaxOp{});
    else if (kind == 2) acc = warpButterfly(acc, gm::MinOp{});
    else acc = warpButterfly(acc, gm::SumOp{});
    if (lane == 0) {
      if (kind == 3) acc = count ? Acc(acc / Acc(count)) : Acc(0);
      store(y, o, acc);
    }
  }
}

// ------------------------------------------------------------------ attention
__global__ void kvAppendKernel(const float *k, const float *v, float *kc, float *vc, int64_t kvHeads, int64_t n, int64_t D, int64_t cap,
                               int64_t past, int64_t ks0, int64_t ks1, int64_t ks2, int64_t vs0, int64_t vs1, int64_t vs2, int64_t total) {
  GRID_STRIDE(e, total) {
    const int64_t d = e % D, j = (e / D) % n, bh = e / (D * n), h = bh % kvHeads, b = bh / kvHeads;
    const int64_t dst = (bh * cap + past + j) * D + d;
    kc[dst] = k[b * ks0 + h * ks1 + j * ks2 + d];
    vc[dst] = v[b * vs0 + h * vs1 + j * vs2 + d];
  }
}

/// Block (x: tile of kAttnRows rows over (group head, query), y: kv head, z: batch),
/// kAttnThreads threads. Per key tile of kAttnKeys: K and V into shared memory,
/// scores (thread per (row, key)), one warp per row for the online-softmax step,
/// then each thread rescales and adds its (row, dim) accumulators.
__global__ void __launch_bounds__(gm::kAttnThreads) attentionKernel(gm::AttentionParams p) {
  using namespace gm;
  extern __shared__ float smem[];
  __shared__ int64_t sHead[kAttnRows], sQuery[kAttnRows], sLimit[kAttnRows];
  __shared__ int64_t sKeys;
  const int D = int(p.headDim), tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.z, hk = blockIdx.y, group = p.heads / p.kvHeads;
  const int64_t rho0 = int64_t(blockIdx.x) * kAttnRows;
  const int rows = int(min(int64_t(kAttnRows), group * p.querySeq - rho0));
  float *sQ = smem, *sK = sQ + kAttnRows * D, *sV = sK + kAttnKeys * (D + 1), *sP = sV + kAttnKeys * D;
  float *sMax = sP + kAttnRows * kAttnKeys, *sSum = sMax + kAttnRows, *sCorr = sSum + kAttnRows;
  if (tid < kAttnRows) {
    int64_t h = 0, i = 0, limit = 0;
    if (tid < rows) {
      attentionRow(p, hk, rho0 + tid, h, i);
      limit = attentionKeyLimit(p, i);
    }
    sHead[tid] = h, sQuery[tid] = i, sLimit[tid] = limit;
    sMax[tid] = kNegInf, sSum[tid] = 0.0f, sCorr[tid] = 1.0f;
  }
  __syncthreads();
  if (tid == 0) {
    int64_t keys = 0;
    for (int r = 0; r < rows; ++r) keys = max(keys, sLimit[r]);
    sKeys = keys;
  }
  for (int e = tid; e < rows * D; e += kAttnThreads) {
    const int r = e / D, d = e - r * D;
    sQ[e] = p.q[b * p.qStrides[0] + sHead[r] * p.qStrides[1] + sQuery[r] * p.qStrides[2] + d];
  }
  __syncthreads();
  const int64_t keys = sKeys;
  const float *kBase = p.k + b * p.kStrides[0] + hk * p.kStrides[1];
  const float *vBase = p.v + b * p.vStrides[0] + hk * p.vStrides[1];
  float acc[kAttnAcc];
#pragma unroll
  for (int a = 0; a < kAttnAcc; ++a) acc[a] = 0.0f;
  for (int64_t j0 = 0; j0 < keys; j0 += kAttnKeys) {
    const int nb = int(min(int64_t(kAttnKeys), keys - j0));
    for (int e = tid; e < nb * D; e += kAttnThreads) {
      const int j = e / D, d = e - j * D;
      sK[j * (D + 1) + d] = kBase[(j0 + j) * p.kStrides[2] + d];
      sV[e] = vBase[(j0 + j) * p.vStrides[2] + d];
    }
    __syncthreads();
    for (int e = tid; e < kAttnRows * kAttnKeys; e += kAttnThreads) {
      const int r = e / kAttnKeys, j = e - r * kAttnKeys;
      float s = kNegInf;
      if (r < rows && j < nb && j0 + j < sLimit[r]) {
        const float dot = dotSequential(sQ + r * D, sK + j * (D + 1), D);
        s = attentionScore(dot, p.scale, p.mask, p.mask ? attentionMaskOffset(p, b, sHead[r], sQuery[r], j0 + j) : 0);
      }
      sP[e] = s;
    }
    __syncthreads();
    for (int r = warp; r < kAttnRows; r += kAttnThreads / 32) {
      const float s = sP[r * kAttnKeys + lane];
      const float running = sMax[r];
      const float newMax = onlineNewMax(running, warpButterfly(s, MaxOp{}));
      const float corr = onlineCorrection(running, newMax);
      const float w = onlineWeight(s, newMax);
      const float tileSum = warpButterfly(w, SumOp{});
      sP[r * kAttnKeys + lane] = w;
      __syncwarp(); // every lane has read sMax[r] before lane 0 replaces it
      if (lane == 0) {
        sSum[r] = onlineSum(sSum[r], corr, tileSum);
        sMax[r] = newMax;
        sCorr[r] = corr;
      }
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < kAttnAcc; ++a) {
      const int e = tid + a * kAttnThreads, r = e / D, d = e - r * D;
      if (r < rows) acc[a] = onlineAccumulate(acc[a], sCorr[r], weightedValues(sP + r * kAttnKeys, sV + d, D, nb));
    }
    __syncthreads(); // the next tile overwrites sK, sV, sP and sCorr
  }
#pragma unroll
  for (int a = 0; a < kAttnAcc; ++a) {
    const int e = tid + a * kAttnThreads, r = e / D, d = e - r * D;
    if (r < rows)
      p.out[b * p.outStrides[0] + sHead[r] * p.outStrides[1] + sQuery[r] * p.outStrides[2] + d] = acc[a] * attentionFinalInv(sSum[r]);
  }
}

// ------------------------------------------------------------------ host: map building
void strides3(const View &t, int64_t *s) {
  int64_t st[gm::kMaxDims];
  gm::contiguousStrides(t.shape.data(), int(t.shape.size()), st);
  s[0] = st[0], s[1] = st[1], s[2] = st[2];
}
/// Output map of an elementwise op: operand strides broadcast into y's shape, coalesced.
bool broadcastMap(const View &y, std::initializer_list<const View *> operands, gm::IndexMap &m) {
  m = gm::IndexMap{};
  const int64_t *shapes[3] = {};
  int ranks[3] = {}, k = 0;
  for (const View *v : operands) shapes[k] = v->shape.data(), ranks[k++] = int(v->shape.size());
  return gm::broadcastMap(y.shape.data(), int(y.shape.size()), shapes, ranks, k, m);
}

#define LAUNCH_CHECK(name)                                                     \
  do {                                                                         \
    if (std::string err_ = launchError(c, name); !err_.empty()) return err_;   \
  } while (0)

// ------------------------------------------------------------------ run functions
int unaryOpOf(const std::string &name) {
  for (int i = 0; i < gm::kUnaryCount; ++i) if (name == gm::kUnaryNames[i]) return i;
  return -1;
}
int binaryOpOf(const std::string &name) {
  for (int i = 0; i < gm::kBinaryCount; ++i) if (name == gm::kBinaryNames[i]) return i;
  return -1;
}

std::string deviceCopy(KernelContext &c, void *dst, const void *src, size_t bytes, CudaEnv &env) {
  if (dst == src || bytes == 0) return "";
  return cudaError(c, "cudaMemcpyAsync", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, env.stream));
}

std::string runUnary(KernelContext &c, CudaEnv &env) {
  const int op = unaryOpOf(c.spec->op);
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  const int64_t n = numel(x);
  if (op < 0 || x.dtype != y.dtype) return fail(c, "unsupported unary op or result dtype");
  if (op == gm::UIdentity || (x.dtype == DType::Bool && op == gm::UNeg)) return deviceCopy(c, y.data, x.data, bytesOf(x), env);
  if (n == 0) return "";
  const unsigned grid = gridFor(n);
  switch (x.dtype) {
  case DType::F32: unaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const float *>(x.data), static_cast<float *>(y.data), op, n); break;
  case DType::F16: unaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const HalfS *>(x.data), static_cast<HalfS *>(y.data), op, n); break;
  case DType::BF16: unaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const Bf16S *>(x.data), static_cast<Bf16S *>(y.data), op, n); break;
  case DType::I64: unaryIntKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const long long *>(x.data), static_cast<long long *>(y.data), op, n); break;
  case DType::I32: unaryIntKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const int *>(x.data), static_cast<int *>(y.data), op, n); break;
  case DType::Bool:
    if (op != gm::UNot) return fail(c, "bool operand");
    notKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const uint8_t *>(x.data), static_cast<uint8_t *>(y.data), n);
    break;
  default: return fail(c, onHost(x.dtype));
  }
  LAUNCH_CHECK("unary");
  return "";
}
std::string checkUnary(const ArtifactSpec &s, const KernelSpec &k) {
  const int op = unaryOpOf(k.op);
  const DType t = inType(s, k, 0);
  if (op == gm::UIdentity) return "";
  if (t == DType::Bool) return op == gm::UNot || op == gm::UNeg ? "" : "bool operand of '" + k.op + "': runs on the host";
  if (op == gm::UNot) return "'not' of a non-bool operand: runs on the host";
  if (isHalfOrFloat(t) || t == DType::I64 || t == DType::I32) return "";
  return onHost(t);
}

std::string runGelu(KernelContext &c, CudaEnv &env) {
  const int64_t n = numel(*c.inputs[0]);
  if (n == 0) return "";
  geluKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const float *>(c.inputs[0]->data), static_cast<float *>(c.outputs[0]->data), n,
                                                      stringAttr(*c.spec, "approximate", "none") == "tanh");
  LAUNCH_CHECK("gelu");
  return "";
}

std::string runRotary(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0], &cs = *c.inputs[1];
  const int rank = int(x.shape.size()), tableRank = int(cs.shape.size());
  if (rank < 1 || rank > gm::kMaxDims || tableRank > rank) return fail(c, "rank outside the device kernel's range");
  RotaryArgs a{};
  a.x = static_cast<const float *>(x.data);
  a.cos = static_cast<const float *>(cs.data);
  a.sin = static_cast<const float *>(c.inputs[2]->data);
  a.y = static_cast<float *>(c.outputs[0]->data);
  a.half = x.shape.back() / 2;
  a.rows = a.half ? numel(x) / (2 * a.half) : 0;
  a.dims = rank - 1;
  int64_t strides[gm::kMaxDims];
  gm::broadcastStrides(cs.shape.data(), tableRank, x.shape.data(), rank, strides);
  for (int d = 0; d < a.dims; ++d) a.leading[d] = x.shape[size_t(d)], a.strides[d] = strides[d];
  if (a.rows * a.half == 0) return "";
  rotaryKernel<<<gridFor(a.rows * a.half), kThreads, 0, env.stream>>>(a);
  LAUNCH_CHECK("rotary");
  return "";
}
std::string checkRotary(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = allFloat32(s, k); !e.empty()) return e;
  if (inRank(s, k, 0) > size_t(gm::kMaxDims)) return "input of rank above 8: runs on the host";
  return "";
}

std::string runBinary(KernelContext &c, CudaEnv &env) {
  const int op = binaryOpOf(c.spec->op);
  const View &a = *c.inputs[0], &b = *c.inputs[1];
  View &y = *c.outputs[0];
  const int64_t n = numel(y);
  if (op < 0 || a.dtype != b.dtype) return fail(c, "operands have different dtypes");
  if (n == 0) return "";
  gm::IndexMap m;
  if (!broadcastMap(y, {&a, &b}, m)) return fail(c, "rank above 8");
  const unsigned grid = gridFor(n);
  const bool logical = op == gm::BAnd || op == gm::BOr;
  switch (a.dtype) {
  case DType::F32:
    if (logical) return fail(c, "logical op needs bool operands");
    binaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const float *>(a.data), static_cast<const float *>(b.data), y.data, m, op, n);
    break;
  case DType::F16:
    if (logical) return fail(c, "logical op needs bool operands");
    binaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const HalfS *>(a.data), static_cast<const HalfS *>(b.data), y.data, m, op, n);
    break;
  case DType::BF16:
    if (logical) return fail(c, "logical op needs bool operands");
    binaryFloatKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const Bf16S *>(a.data), static_cast<const Bf16S *>(b.data), y.data, m, op, n);
    break;
  case DType::I64:
    if (logical || op == gm::BDiv) return fail(c, "integer div/logical op: runs on the host");
    binaryIntKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const long long *>(a.data), static_cast<const long long *>(b.data), y.data, m, op, n);
    break;
  case DType::I32:
    if (logical || op == gm::BDiv) return fail(c, "integer div/logical op: runs on the host");
    binaryIntKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const int *>(a.data), static_cast<const int *>(b.data), y.data, m, op, n);
    break;
  case DType::Bool:
    if (!logical && op != gm::BEqual) return fail(c, "not defined on bool operands");
    binaryBoolKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const uint8_t *>(a.data), static_cast<const uint8_t *>(b.data),
                                                        static_cast<uint8_t *>(y.data), m, op, n);
    break;
  default: return fail(c, onHost(a.dtype));
  }
  LAUNCH_CHECK("binary");
  return "";
}
std::string checkBinary(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = rankCheck(s, k); !e.empty()) return e;
  const int op = binaryOpOf(k.op);
  const DType t = inType(s, k, 0);
  if (inType(s, k, 1) != t) return "operands of different dtypes: runs on the host";
  const bool logical = op == gm::BAnd || op == gm::BOr;
  if (t == DType::Bool) return logical || op == gm::BEqual ? "" : "bool operands of '" + k.op + "': runs on the host";
  if (logical) return "'" + k.op + "' of non-bool operands: runs on the host";
  if (isHalfOrFloat(t)) return "";
  if (t == DType::I64 || t == DType::I32)
    return op == gm::BDiv ? "integer div (division by zero is an error there): runs on the host" : "";
  return onHost(t);
}

std::string runWhere(KernelContext &c, CudaEnv &env) {
  const View &cond = *c.inputs[0], &a = *c.inputs[1], &b = *c.inputs[2];
  View &y = *c.outputs[0];
  const int64_t n = numel(y);
  if (n == 0) return "";
  gm::IndexMap m;
  if (!broadcastMap(y, {&cond, &a, &b}, m)) return fail(c, "rank above 8");
  const bool ok = bySize(gm::elemSize(code(a.dtype)), [&](auto e) {
    using E = decltype(e);
    whereKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const uint8_t *>(cond.data), static_cast<const E *>(a.data),
                                                         static_cast<const E *>(b.data), static_cast<E *>(y.data), m, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("where");
  return "";
}
std::string checkWhere(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = rankCheck(s, k); !e.empty()) return e;
  const DType t = inType(s, k, 0);
  if (t != DType::Bool && t != DType::U8) return onHost(t, "condition");
  return "";
}

std::string runCast(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  if (x.dtype == y.dtype) return deviceCopy(c, y.data, x.data, bytesOf(x), env);
  const int64_t n = numel(x);
  if (n == 0) return "";
  castKernel<<<gridFor(n), kThreads, 0, env.stream>>>(x.data, code(x.dtype), y.data, code(y.dtype), n);
  LAUNCH_CHECK("cast");
  return "";
}

std::string runNorm(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  const bool rms = c.spec->op == "rms_norm";
  int64_t axis = rms ? -1 : intAttr(*c.spec, "axis", -1);
  if (!normAxis(axis, int64_t(x.shape.size()))) return fail(c, "axis out of range");
  int64_t n = 1;
  for (size_t d = size_t(axis); d < x.shape.size(); ++d) n *= x.shape[d];
  const int64_t rows = n ? numel(x) / n : 0;
  if (rows == 0) return "";
  if (rows > int64_t(INT32_MAX)) return fail(c, "too many rows for one launch");
  const View *bias = input(c, 2);
  normKernel<<<unsigned(rows), kThreads, 0, env.stream>>>(static_cast<const float *>(x.data), static_cast<const float *>(c.inputs[1]->data),
                                                          bias ? static_cast<const float *>(bias->data) : nullptr,
                                                          static_cast<float *>(c.outputs[0]->data), n,
                                                          float(floatAttr(*c.spec, "epsilon", 1e-5)), rms ? 1 : 0);
  LAUNCH_CHECK("norm");
  return "";
}

std::string runSoftmax(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  int64_t axis = intAttr(*c.spec, "axis", -1), rank = int64_t(x.shape.size());
  if (!normAxis(axis, rank)) return fail(c, "axis out of range");
  const int64_t n = x.shape[size_t(axis)];
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[size_t(d)];
  const int64_t outer = n * inner ? numel(x) / (n * inner) : 0;
  if (outer == 0) return "";
  const float *px = static_cast<const float *>(x.data);
  float *py = static_cast<float *>(c.outputs[0]->data);
  if (inner == 1) {
    if (outer > int64_t(INT32_MAX)) return fail(c, "too many rows for one launch");
    softmaxRowKernel<<<unsigned(outer), kThreads, 0, env.stream>>>(px, py, n);
  } else {
    softmaxColumnKernel<<<gridFor(outer * inner), kThreads, 0, env.stream>>>(px, py, outer, n, inner);
  }
  LAUNCH_CHECK("softmax");
  return "";
}

std::string runEmbedding(KernelContext &c, CudaEnv &env) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1];
  const int64_t vocab = table.shape[0], dim = table.shape[1], n = numel(ids) * dim;
  if (n == 0) return "";
  const bool ok = bySize(gm::elemSize(code(table.dtype)), [&](auto e) {
    using E = decltype(e);
    embeddingKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(table.data), ids.data, code(ids.dtype),
                                                             static_cast<E *>(c.outputs[0]->data), vocab, dim, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("embedding");
  return "";
}
std::string checkEmbedding(const ArtifactSpec &s, const KernelSpec &k) {
  if (!isIndexType(inType(s, k, 1))) return onHost(inType(s, k, 1), "ids");
  return "";
}
std::string runEmbeddingInt8(KernelContext &c, CudaEnv &env) {
  const View &table = *c.inputs[0], &ids = *c.inputs[1], &scales = *c.inputs[2];
  const int64_t rows = table.shape[0], dim = table.shape[1], n = numel(ids) * dim;
  const int64_t group = intAttr(*c.spec, "group_size", dim), groups = group > 0 ? (dim + group - 1) / group : 0;
  if (n == 0) return "";
  if (group <= 0) return fail(c, "bad group_size");
  embeddingInt8Kernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const int8_t *>(table.data), ids.data, code(ids.dtype),
                                                               static_cast<const uint16_t *>(scales.data), static_cast<float *>(c.outputs[0]->data),
                                                               rows, dim, group, groups, n);
  LAUNCH_CHECK("embedding int8");
  return "";
}

std::string runPositions(KernelContext &c, CudaEnv &env) {
  View &y = *c.outputs[0];
  const int64_t n = numel(y);
  if (n == 0) return "";
  positionsKernel<<<gridFor(n), kThreads, 0, env.stream>>>(y.data, code(y.dtype), n, c.positionOffset);
  LAUNCH_CHECK("positions");
  return "";
}

std::string runCopy(KernelContext &c, CudaEnv &env) { return deviceCopy(c, c.outputs[0]->data, c.inputs[0]->data, bytesOf(*c.inputs[0]), env); }

std::string launchMapCopy(KernelContext &c, CudaEnv &env, const void *src, void *dst, int elem, gm::IndexMap &m, int64_t base, int64_t n,
                          const char *name) {
  if (n == 0) return "";
  gm::coalesce(m);
  const bool ok = bySize(elem, [&](auto e) {
    using E = decltype(e);
    copyMapKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(src), static_cast<E *>(dst), m, base, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK(name);
  return "";
}

std::string runTranspose(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  const int rank = int(x.shape.size());
  if (rank > gm::kMaxDims) return fail(c, "rank above 8");
  std::vector<int64_t> perm;
  if (!intsAttr(*c.spec, "perm", perm) || perm.empty())
    for (int i = 0; i < rank; ++i) perm.push_back(rank - 1 - i);
  if (int(perm.size()) != rank) return fail(c, "perm does not fit the operand");
  gm::IndexMap m{};
  gm::transposeMap(x.shape.data(), rank, perm.data(), m);
  return launchMapCopy(c, env, x.data, c.outputs[0]->data, gm::elemSize(code(x.dtype)), m, 0, numel(*c.outputs[0]), "transpose");
}

std::string runExpand(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  const View &y = *c.outputs[0];
  gm::IndexMap m;
  if (!broadcastMap(y, {&x}, m)) return fail(c, "rank above 8");
  return launchMapCopy(c, env, x.data, y.data, gm::elemSize(code(x.dtype)), m, 0, numel(y), "expand");
}

std::string runSlice(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  const int rank = int(x.shape.size());
  if (rank > gm::kMaxDims) return fail(c, "rank above 8");
  const int64_t n = numel(y);
  if (n == 0) return "";
  gm::SliceArgs a{};
  a.rank = rank;
  for (int d = 0; d < rank; ++d) a.inShape[d] = x.shape[size_t(d)];
  const View *starts = input(c, 1), *ends = input(c, 2), *axes = input(c, 3), *steps = input(c, 4);
  a.count = int(numel(*starts));
  a.starts = starts->data, a.startsType = code(starts->dtype);
  a.ends = ends->data, a.endsType = code(ends->dtype);
  a.axes = axes ? axes->data : nullptr, a.axesType = axes ? code(axes->dtype) : gm::I64;
  a.steps = steps ? steps->data : nullptr, a.stepsType = steps ? code(steps->dtype) : gm::I64;
  gm::IndexMap outShape{};
  outShape.rank = rank;
  for (int d = 0; d < rank; ++d) outShape.shape[d] = y.shape[size_t(d)];
  const bool ok = bySize(gm::elemSize(code(x.dtype)), [&](auto e) {
    using E = decltype(e);
    sliceKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(x.data), static_cast<E *>(y.data), a, outShape, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("slice");
  return "";
}
std::string checkSlice(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = rankCheck(s, k); !e.empty()) return e;
  for (size_t i = 1; i < 5; ++i)
    if (present(k, i) && !isIndexType(inType(s, k, i))) return onHost(inType(s, k, i), "slice parameters");
  return "";
}

std::string runJoin(KernelContext &c, CudaEnv &env, bool concat) {
  const View &whole = concat ? *c.outputs[0] : *c.inputs[0];
  int64_t axis = intAttr(*c.spec, "axis", 0);
  if (!normAxis(axis, int64_t(whole.shape.size()))) return fail(c, "axis out of range");
  int64_t inner = 1;
  for (size_t d = size_t(axis) + 1; d < whole.shape.size(); ++d) inner *= whole.shape[d];
  const int64_t wholeRow = whole.shape[size_t(axis)] * inner;
  const int elem = gm::elemSize(code(whole.dtype));
  int64_t at = 0;
  const size_t parts = concat ? c.inputs.size() : c.outputs.size();
  for (size_t p = 0; p < parts; ++p) {
    const View &part = concat ? *c.inputs[p] : *c.outputs[p];
    const int64_t partRow = part.shape[size_t(axis)] * inner, n = numel(part);
    if (n > 0) {
      const bool ok = bySize(elem, [&](auto e) {
        using E = decltype(e);
        joinKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(concat ? part.data : whole.data),
                                                            static_cast<E *>(concat ? whole.data : part.data), partRow, wholeRow, at, n,
                                                            concat ? 1 : 0);
      });
      if (!ok) return fail(c, "unsupported element size");
      LAUNCH_CHECK(concat ? "concat" : "split");
    }
    at += partRow;
  }
  return "";
}
std::string runConcat(KernelContext &c, CudaEnv &env) { return runJoin(c, env, true); }
std::string runSplit(KernelContext &c, CudaEnv &env) { return runJoin(c, env, false); }

std::string runGather(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0], &idx = *c.inputs[1];
  int64_t axis = intAttr(*c.spec, "axis", 0);
  if (!normAxis(axis, int64_t(x.shape.size()))) return fail(c, "axis out of range");
  int64_t inner = 1;
  for (size_t d = size_t(axis) + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  const int64_t dim = x.shape[size_t(axis)], count = numel(idx), n = numel(*c.outputs[0]);
  if (n == 0) return "";
  const bool ok = bySize(gm::elemSize(code(x.dtype)), [&](auto e) {
    using E = decltype(e);
    gatherKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(x.data), idx.data, code(idx.dtype),
                                                          static_cast<E *>(c.outputs[0]->data), count, inner, dim, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("gather");
  return "";
}
std::string checkGather(const ArtifactSpec &s, const KernelSpec &k) {
  if (!isIndexType(inType(s, k, 1))) return onHost(inType(s, k, 1), "indices");
  return "";
}

std::string runTrilu(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  const size_t rank = x.shape.size();
  const int64_t rows = x.shape[rank - 2], cols = x.shape[rank - 1], n = numel(x);
  if (n == 0) return "";
  const View *k = input(c, 1);
  const bool ok = bySize(gm::elemSize(code(x.dtype)), [&](auto e) {
    using E = decltype(e);
    triluKernel<<<gridFor(n), kThreads, 0, env.stream>>>(static_cast<const E *>(x.data), static_cast<E *>(c.outputs[0]->data), rows, cols,
                                                         k ? k->data : nullptr, k ? code(k->dtype) : gm::I64,
                                                         intAttr(*c.spec, "upper", 1) != 0, n);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("trilu");
  return "";
}
std::string checkTrilu(const ArtifactSpec &s, const KernelSpec &k) {
  if (present(k, 1) && !isIndexType(inType(s, k, 1))) return onHost(inType(s, k, 1), "k");
  return "";
}

std::string runFill(KernelContext &c, CudaEnv &env) {
  View &y = *c.outputs[0];
  const int64_t n = numel(y);
  if (n == 0) return "";
  fillKernel<<<gridFor(n), kThreads, 0, env.stream>>>(y.data, code(y.dtype), n, floatAttr(*c.spec, "value", 0.0));
  LAUNCH_CHECK("fill");
  return "";
}
std::string runRange(KernelContext &c, CudaEnv &env) {
  View &y = *c.outputs[0];
  const int64_t n = numel(y); // the shape function counted it from the (host) values
  if (n == 0) return "";
  rangeKernel<<<gridFor(n), kThreads, 0, env.stream>>>(c.inputs[0]->data, code(c.inputs[0]->dtype), c.inputs[2]->data, code(c.inputs[2]->dtype),
                                                       y.data, code(y.dtype), n);
  LAUNCH_CHECK("range");
  return "";
}
std::string checkRange(const ArtifactSpec &s, const KernelSpec &k) {
  for (size_t i = 0; i < 3; ++i)
    if (inType(s, k, i) == DType::F64 || !present(k, i)) return "f64 range bounds: runs on the host";
  return "";
}
std::string runShapeOf(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  if (x.shape.size() > size_t(gm::kMaxDims)) return fail(c, "rank above 8");
  if (x.shape.empty()) return "";
  Dims dims{};
  for (size_t d = 0; d < x.shape.size(); ++d) dims.d[d] = x.shape[d];
  shapeOfKernel<<<1, 32, 0, env.stream>>>(c.outputs[0]->data, code(c.outputs[0]->dtype), dims, int(x.shape.size()));
  LAUNCH_CHECK("shape_of");
  return "";
}

std::string runScatterNd(KernelContext &c, CudaEnv &env) {
  const View &data = *c.inputs[0], &idx = *c.inputs[1], &upd = *c.inputs[2];
  View &y = *c.outputs[0];
  if (auto e = deviceCopy(c, y.data, data.data, bytesOf(data), env); !e.empty()) return e;
  const int64_t k = idx.shape.back(), tuples = k ? numel(idx) / k : 0;
  if (data.shape.size() > size_t(gm::kMaxDims)) return fail(c, "rank above 8");
  int64_t slice = 1;
  for (size_t d = size_t(k); d < data.shape.size(); ++d) slice *= data.shape[d];
  if (tuples == 0 || slice == 0) return "";
  gm::IndexMap m{};
  m.rank = int(data.shape.size());
  m.operands = 1;
  for (int d = 0; d < m.rank; ++d) m.shape[d] = data.shape[size_t(d)];
  gm::contiguousStrides(m.shape, m.rank, m.strides[0]);
  const bool ok = bySize(gm::elemSize(code(data.dtype)), [&](auto e) {
    using E = decltype(e);
    scatterNdKernel<<<gridFor(slice), kThreads, 0, env.stream>>>(idx.data, code(idx.dtype), static_cast<const E *>(upd.data),
                                                                 static_cast<E *>(y.data), m, k, tuples, slice);
  });
  if (!ok) return fail(c, "unsupported element size");
  LAUNCH_CHECK("scatter_nd");
  return "";
}
std::string checkScatterNd(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = rankCheck(s, k); !e.empty()) return e;
  if (!isIndexType(inType(s, k, 1))) return onHost(inType(s, k, 1), "indices");
  return "";
}

std::string runReduce(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0];
  View &y = *c.outputs[0];
  const int rank = int(x.shape.size());
  if (rank > gm::kMaxDims) return fail(c, "rank above 8");
  std::vector<int64_t> axes;
  intsAttr(*c.spec, "axes", axes);
  std::vector<bool> reduced(size_t(rank), axes.empty());
  for (int64_t a : axes) {
    if (!normAxis(a, rank)) return fail(c, "axis out of range");
    reduced[size_t(a)] = true;
  }
  int64_t own[gm::kMaxDims];
  gm::contiguousStrides(x.shape.data(), rank, own);
  gm::IndexMap kept{}, red{};
  kept.operands = red.operands = 1;
  int64_t count = 1, outputs = 1;
  for (int d = 0; d < rank; ++d) {
    gm::IndexMap &m = reduced[size_t(d)] ? red : kept;
    m.shape[m.rank] = x.shape[size_t(d)];
    m.strides[0][m.rank] = own[d];
    ++m.rank;
    (reduced[size_t(d)] ? count : outputs) *= x.shape[size_t(d)];
  }
  gm::coalesce(kept);
  gm::coalesce(red);
  if (outputs == 0) return "";
  const std::string &op = c.spec->op;
  const int kind = op == "reduce_max" ? 1 : op == "reduce_min" ? 2 : op == "reduce_mean" ? 3 : 0;
  const int warpsPerBlock = kThreads / 32;
  const unsigned grid = unsigned(std::max<int64_t>(1, std::min<int64_t>((outputs + warpsPerBlock - 1) / warpsPerBlock, int64_t(1) << 20)));
  const double fInit = kind == 1 ? -INFINITY : kind == 2 ? INFINITY : 0.0;
  switch (x.dtype) {
  case DType::F32:
    reduceKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const float *>(x.data), static_cast<float *>(y.data), kept, red, count, kind, outputs, fInit);
    break;
  case DType::F16:
    reduceKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const HalfS *>(x.data), static_cast<HalfS *>(y.data), kept, red, count, kind, outputs, fInit);
    break;
  case DType::BF16:
    reduceKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const Bf16S *>(x.data), static_cast<Bf16S *>(y.data), kept, red, count, kind, outputs, fInit);
    break;
  case DType::I64: {
    const long long init = kind == 1 ? INT64_MIN : kind == 2 ? INT64_MAX : 0;
    reduceKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const long long *>(x.data), static_cast<long long *>(y.data), kept, red, count, kind, outputs, init);
    break;
  }
  case DType::I32: {
    const long long init = kind == 1 ? INT32_MIN : kind == 2 ? INT32_MAX : 0;
    reduceKernel<<<grid, kThreads, 0, env.stream>>>(static_cast<const int *>(x.data), static_cast<int *>(y.data), kept, red, count, kind, outputs, init);
    break;
  }
  default: return fail(c, onHost(x.dtype));
  }
  LAUNCH_CHECK("reduce");
  return "";
}
std::string checkReduce(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = rankCheck(s, k); !e.empty()) return e;
  const DType t = inType(s, k, 0);
  if (isHalfOrFloat(t) || t == DType::I64 || t == DType::I32) return "";
  return onHost(t);
}

size_t attentionSharedBytes(int64_t D) {
  using namespace gm;
  return size_t(kAttnRows * D + kAttnKeys * (D + 1) + kAttnKeys * D + kAttnRows * kAttnKeys + 3 * kAttnRows) * sizeof(float);
}

std::string runAttention(KernelContext &c, CudaEnv &env) {
  const View &q = *c.inputs[0], &k = *c.inputs[1], &v = *c.inputs[2];
  const View *mask = input(c, 3);
  gm::AttentionParams p{};
  p.q = static_cast<const float *>(q.data);
  p.k = static_cast<const float *>(k.data);
  p.v = static_cast<const float *>(v.data);
  p.out = static_cast<float *>(c.outputs[0]->data);
  p.batch = q.shape[0], p.heads = q.shape[1], p.kvHeads = k.shape[1];
  p.querySeq = q.shape[2], p.keySeq = k.shape[2], p.headDim = q.shape[3];
  strides3(q, p.qStrides), strides3(k, p.kStrides), strides3(v, p.vStrides), strides3(*c.outputs[0], p.outStrides);
  p.scale = float(floatAttr(*c.spec, "scale", 1.0 / std::sqrt(double(p.headDim ? p.headDim : 1))));
  p.causal = int(intAttr(*c.spec, "causal", 0) != 0);
  const int64_t D = p.headDim;
  if (D > gm::kAttnMaxDim) return fail(c, "head_dim " + std::to_string(D) + " exceeds the device kernel's 256");
  if (cpu::KvCache *cache = c.cache) {
    // Append this step's keys and values at [past, past + n), then attend over the whole cache.
    const int64_t n = p.keySeq, cap = cache->capacity;
    if (cache->kHeadFloats > 0 || cache->vHeadFloats > 0) return fail(c, "the device KV cache must be in the plain layout");
    if (cache->past + n > cap)
      return fail(c, "the KV cache holds " + std::to_string(cap) + " positions; " + std::to_string(cache->past) + " + " + std::to_string(n) +
                         " do not fit");
    const int64_t total = p.batch * p.kvHeads * n * D;
    if (total > 0) {
      kvAppendKernel<<<gridFor(total), kThreads, 0, env.stream>>>(p.k, p.v, cache->k, cache->v, p.kvHeads, n, D, cap, cache->past, p.kStrides[0],
                                                                  p.kStrides[1], p.kStrides[2], p.vStrides[0], p.vStrides[1], p.vStrides[2], total);
      LAUNCH_CHECK("kv cache append");
    }
    p.k = cache->k, p.v = cache->v;
    p.kStrides[0] = p.vStrides[0] = p.kvHeads * cap * D;
    p.kStrides[1] = p.vStrides[1] = cap * D;
    p.kStrides[2] = p.vStrides[2] = D;
    p.keySeq = cache->past + n;
    mask = nullptr; // as on the host: cached decoding has all-ones attention masks
  }
  if (mask) {
    if (mask->shape.size() > 4) return fail(c, "mask of rank above 4");
    const int64_t full[4] = {p.batch, p.heads, p.querySeq, p.keySeq};
    p.mask = static_cast<const float *>(mask->data);
    gm::broadcastStrides(mask->shape.data(), int(mask->shape.size()), full, 4, p.maskStrides);
  }
  const int64_t group = p.heads / p.kvHeads, tiles = (group * p.querySeq + gm::kAttnRows - 1) / gm::kAttnRows;
  if (tiles == 0 || p.batch == 0 || D == 0) return "";
  if (tiles > int64_t(INT32_MAX) || p.kvHeads > 65535 || p.batch > 65535) return fail(c, "attention grid too large");
  const size_t shared = attentionSharedBytes(D);
  if (shared > 48 * 1024) {
    if (auto e = cudaError(c, "cudaFuncSetAttribute",
                           cudaFuncSetAttribute(attentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
        !e.empty())
      return e;
  }
  attentionKernel<<<dim3(unsigned(tiles), unsigned(p.kvHeads), unsigned(p.batch)), gm::kAttnThreads, shared, env.stream>>>(p);
  LAUNCH_CHECK("attention");
  return "";
}
std::string checkAttention(const ArtifactSpec &s, const KernelSpec &k) {
  if (auto e = allFloat32(s, k); !e.empty()) return e;
  const auto &shape = s.tensors[size_t(k.inputs[0])].shape;
  if (shape.size() != 4) return "query of rank " + std::to_string(shape.size()) + ": runs on the host";
  if (!shape[3].isStatic()) return "dynamic head_dim: runs on the host";
  if (shape[3].value > gm::kAttnMaxDim)
    return "head_dim " + std::to_string(shape[3].value) + " above the device kernel's 256: runs on the host";
  if (present(k, 3) && inRank(s, k, 3) > 4) return "mask of rank above 4: runs on the host";
  return "";
}

// Checks shared by several ops.
std::string checkFloat32(const ArtifactSpec &s, const KernelSpec &k) { return allFloat32(s, k); }
std::string checkRanks(const ArtifactSpec &s, const KernelSpec &k) { return rankCheck(s, k); }
} // namespace

void registerGraphKernels() {
  auto add = [](const std::string &op, DeviceKernelFn run, DeviceCheckFn check = nullptr, const std::string &format = "f32") {
    addDeviceKernel(op, format, DeviceKernel{run, check});
  };
  for (const char *name : gm::kUnaryNames) add(name, runUnary, checkUnary);
  for (const char *name : gm::kBinaryNames) add(name, runBinary, checkBinary);
  add("where", runWhere, checkWhere);
  add("cast", runCast); // every dtype pair, element by element as the host
  add("layer_norm", runNorm, checkFloat32);
  add("rms_norm", runNorm, checkFloat32);
  add("softmax", runSoftmax, checkFloat32);
  add("gelu", runGelu, checkFloat32);
  add("rotary", runRotary, checkRotary);
  add("attention", runAttention, checkAttention);
  add("embedding", runEmbedding, checkEmbedding);
  add("embedding", runEmbeddingInt8, checkEmbedding, "int8");
  add("positions", runPositions);
  for (const char *op : {"reshape", "squeeze", "unsqueeze"}) add(op, runCopy);
  add("transpose", runTranspose, checkRanks);
  add("expand", runExpand, checkRanks);
  add("slice", runSlice, checkSlice);
  add("concat", runConcat);
  add("split", runSplit);
  add("gather", runGather, checkGather);
  for (const char *op : {"reduce_mean", "reduce_sum", "reduce_max", "reduce_min"}) add(op, runReduce, checkReduce);
  add("trilu", runTrilu, checkTrilu);
  add("fill", runFill);
  add("range", runRange, checkRange);
  add("shape_of", runShapeOf, checkRanks);
  add("scatter_nd", runScatterNd, checkScatterNd);
}

} // namespace lathe::cuda
