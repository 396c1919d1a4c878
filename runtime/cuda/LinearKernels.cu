// CUDA kernels of `linear` in every weight format and of `matmul`.
//
//   linear f32        cuBLAS GEMM (fp32 compute, no TF32), then a bias kernel.
//   linear int8/int4/int3/bf16/fp16, nm-f32/nm-int4
//     m <= 8 rows:    decode-fused GEMV (LinearMath.h): one warp per 2 output rows
//                     (m <= 2) or 1 (m <= 8), 4 warps a block; lane l reads
//                     16-byte chunks l, l+32, ... of each weight row (two in
//                     flight), the activations through the read-only cache
//                     (float4 loads), fp32 accumulation, a xor-butterfly over
//                     the warp, lane 0 stores (+ bias).
//     m > 8 rows:     the weight is dequantized into fp32 scratch (slot 0),
//                     then cuBLAS GEMM + bias (fp32 for parity with the CPU);
//                     with LATHE_CUDA_GEMM=tensor, bf16/fp16 weights go to a
//                     16-bit cuBLAS GEMM as they are (activations rounded to the
//                     weight's type, fp32 accumulation) and f32 GEMMs use TF32.
//   matmul f32        cuBLAS strided-batched GEMM with the CPU's batch
//                     broadcasting (one call when both operands' batch offsets
//                     are linear, else one strided call per outer batch index).
//   act_block 32      (int8/int4 with int8 activations) the rows quantized per block of
//                     32 and widened back first (scratch slot 2), then as above.
//   w8a8              activations quantized per row on the device by the CPU's rule,
//                     int8 products (dp4a GEMV per 8 rows; cuBLAS int8 GEMM above 64
//                     rows when it takes the shapes), the CPU's epilogue: bit-identical.
//   bitmap-f32        each row's first value by a popcount scan, once per weight; a warp
//                     a row, lane l on mask words l, l + 32, ... (their values located by
//                     a warp scan of popcounts); above 8 rows decompressed, then cuBLAS.
//
// cuBLAS runs with CUBLAS_COMPUTE_32F (the handle keeps the default math mode,
// so no TF32): outputs are compared with the CPU's at 1e-4 relative.
#include "runtime/artifact/Attributes.h"
#include "runtime/cuda/CudaBackend.h"
#include "runtime/cuda/LinearMath.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace lathe::cuda {
namespace {

using artifact::DType;
using cpu::KernelContext;
using cpu::View;
using namespace math;

constexpr int kWarps = 4;         // warps per GEMV block
constexpr int64_t kGemvRows = 8;  // activation rows up to which the GEMV runs

// ------------------------------------------------------------------ device code

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o); // mirrored by math::reduceLanes
  return v;
}

enum Kind : int { kChunked = 0, kScalar = 1, kNm = 2 };

/// Work items of one weight row for the dense dequantization: weights (scalar),
/// 32-column blocks (N:M) or chunks.
template <int F, int KIND> __host__ __device__ int64_t unitsPerRow(int64_t k) {
  if constexpr (KIND == kScalar) return k;
  else if constexpr (KIND == kNm) return k / 32;
  else return k / Chunk<F>::weights;
}

template <int F, int MAXM, bool ALIGNED, int KIND>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(LinearArgs a) {
  constexpr int R = WarpRows<MAXM>::value;
  const int lane = int(threadIdx.x & 31);
  const int64_t row0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * R;
  if (row0 >= a.n) return; // whole warps leave together
  float acc[R][MAXM];
  if constexpr (KIND == kChunked) lanePartial<F, MAXM, R, ALIGNED>(a, row0, lane, acc);
  else if constexpr (KIND == kScalar) scalarPartial<F, MAXM, R>(a, row0, lane, acc);
  else nmPartial<F == kNmInt4, MAXM, R, ALIGNED>(a, row0, lane, acc);
#pragma unroll
  for (int i = 0; i < MAXM; ++i) {
    if (i >= a.m) break;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float sum = warpSum(acc[r][i]);
      if (lane == 0 && row0 + r < a.n) a.y[i * a.ldy + row0 + r] = finishOutput(a, row0 + r, sum);
    }
  }
}

/// One thread per (row, chunk): W[row, chunk] as fp32 into dense [n, k].
template <int F, bool ALIGNED, int KIND> __global__ void denseKernel(LinearArgs a, float *w) {
  const int64_t per = unitsPerRow<F, KIND>(a.k);
  const int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= a.n * per) return;
  const int64_t row = index / per, c = index % per;
  if constexpr (KIND == kScalar) {
    w[row * a.k + c] = dequantOne<F>(a, row, c);
  } else if constexpr (KIND == kNm) {
    nmDense<F == kNmInt4, ALIGNED>(a, row, c, w + row * a.k + 32 * c);
  } else {
    constexpr int CH = Chunk<F>::weights;
    float out[CH];
    denseChunk<F, ALIGNED>(a, row, c, out);
    float4 *dst = reinterpret_cast<float4 *>(w + row * a.k + c * CH); // k % CH == 0, scratch 256-aligned
#pragma unroll
    for (int t = 0; t < CH; t += 4) dst[t / 4] = make_float4(out[t], out[t + 1], out[t + 2], out[t + 3]);
  }
}

// ------------------------------------------------------------------ bitmap-f32 (device code)

struct BitmapDev {
  const uint8_t *masks = nullptr; // u8 [n, k/8]
  const float *values = nullptr;  // the kept values, row after row
  const int64_t *starts = nullptr; // [n]: each row's first value
  const float *x = nullptr, *bias = nullptr;
  float *y = nullptr;
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
};

__device__ __forceinline__ int64_t warpSum64(int64_t v) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}

/// counts[row] = the row's kept weights (one warp a row).
__global__ void bitmapRowCountKernel(const uint8_t *masks, int64_t n, int64_t k, int64_t *counts) {
  const int lane = int(threadIdx.x & 31);
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= n) return;
  int64_t count = 0;
  for (int64_t w = lane; w < k / 32; w += 32) count += popcount32(bitmapMaskWord(masks, row, w, k));
  count = warpSum64(count);
  if (lane == 0) counts[row] = count;
}

/// v := its exclusive prefix sum, in place (one block of 1024 threads, chunk after chunk).
__global__ void exclusiveScanKernel(int64_t *v, int64_t n) {
  __shared__ int64_t buffer[1024];
  int64_t carry = 0;
  for (int64_t base = 0; base < n; base += 1024) {
    const int64_t i = base + threadIdx.x, own = i < n ? v[i] : 0;
    buffer[threadIdx.x] = own;
    __syncthreads();
    for (int o = 1; o < 1024; o *= 2) {
      const int64_t t = int(threadIdx.x) >= o ? buffer[threadIdx.x - o] : 0;
      __syncthreads();
      buffer[threadIdx.x] += t;
      __syncthreads();
    }
    if (i < n) v[i] = carry + buffer[threadIdx.x] - own;
    carry += buffer[1023];
    __syncthreads();
  }
}

/// Where lane's mask word starts among the values of this pass: the exclusive scan of the
/// lanes' popcounts (returned), and the pass's total.
__device__ __forceinline__ int laneOffset(int count, int lane, int &total) {
  int inclusive = count;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int t = __shfl_up_sync(0xFFFFFFFFu, inclusive, o);
    if (lane >= o) inclusive += t;
  }
  total = __shfl_sync(0xFFFFFFFFu, inclusive, 31);
  return inclusive - count;
}

/// Row j's walk, one warp: lane takes mask words lane, lane + 32, ... and calls
/// visit(word index, mask, its first value) for each word of the row.
template <class Visit> __device__ __forceinline__ void forEachMaskWord(const BitmapDev &a, int64_t j, int lane, Visit &&visit) {
  const float *vals = a.values + a.starts[j];
  const int64_t words = a.k / 32;
  for (int64_t base = 0; base < words; base += 32) {
    const int64_t w = base + lane;
    const uint32_t mask = w < words ? bitmapMaskWord(a.masks, j, w, a.k) : 0u;
    int total = 0;
    const int offset = laneOffset(popcount32(mask), lane, total);
    if (w < words) visit(w, mask, vals + offset);
    vals += total;
  }
}

/// One warp per output row, up to MAXM activation rows.
template <int MAXM> __global__ void __launch_bounds__(kWarps * 32) bitmapGemvKernel(BitmapDev a) {
  const int lane = int(threadIdx.x & 31);
  const int64_t j = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= a.n) return;
  float acc[MAXM];
#pragma unroll
  for (int r = 0; r < MAXM; ++r) acc[r] = 0.0f;
  forEachMaskWord(a, j, lane, [&](int64_t w, uint32_t mask, const float *vals) {
    if (mask) bitmapWord<MAXM>(mask, vals, a.x, a.ldx, a.m, 32 * w, acc);
  });
#pragma unroll
  for (int r = 0; r < MAXM; ++r) {
    if (r >= a.m) break;
    const float sum = warpSum(acc[r]);
    if (lane == 0) a.y[r * a.ldy + j] = a.bias ? sum + a.bias[j] : sum;
  }
}

/// The weight decompressed into dense fp32 [n, k] (one warp a row), for cuBLAS above 8 rows.
__global__ void bitmapDenseKernel(BitmapDev a, float *w) {
  const int lane = int(threadIdx.x & 31);
  const int64_t j = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= a.n) return;
  forEachMaskWord(a, j, lane, [&](int64_t wi, uint32_t mask, const float *vals) { bitmapDenseWord(mask, vals, w + j * a.k + 32 * wi); });
}

// ------------------------------------------------------------------ W8A8 (device code)

constexpr int kW8Rows = 8;        // activation rows per warp pass of the W8A8 GEMV
constexpr int64_t kW8CublasRows = 64; // above this, cuBLAS's int8 GEMM (when it takes the shapes)

struct W8a8Args {
  const int8_t *q = nullptr;       // [n, k]
  const uint16_t *scales = nullptr; // f16 [n]
  const float *bias = nullptr;
  const int8_t *xq = nullptr;      // [m, kp], kp = k rounded up to 16, zero tail
  const float *rowScale = nullptr; // [m]
  float *y = nullptr;              // [m, n]
  int64_t m = 0, n = 0, k = 0, kp = 0;
};

/// Row blockIdx.x of x quantized as the CPU's tables do (Int8Gemm.h): its max |x| by a
/// block reduction (max is exact in any order; NaN compares false, as on the CPU).
__global__ void w8a8QuantizeKernel(const float *x, int64_t k, int64_t kp, const float *invScale, float tensorScale, int8_t *xq,
                                   float *rowScale) {
  __shared__ float partial[32];
  const int64_t r = blockIdx.x;
  const float *src = x + r * k;
  float amax = 0.0f;
  if (tensorScale <= 0.0f) {
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
      const float a = fabsf(src[i]);
      amax = a > amax ? a : amax;
    }
    for (int o = 16; o >= 1; o /= 2) {
      const float other = __shfl_xor_sync(0xFFFFFFFFu, amax, o);
      amax = other > amax ? other : amax;
    }
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = amax;
    __syncthreads();
    if (threadIdx.x < 32) {
      float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
      for (int o = 16; o >= 1; o /= 2) {
        const float other = __shfl_xor_sync(0xFFFFFFFFu, v, o);
        v = other > v ? other : v;
      }
      if (threadIdx.x == 0) partial[0] = v;
    }
    __syncthreads();
    amax = partial[0];
  }
  float scale = 0.0f;
  const float inv = w8a8RowInverse(amax, tensorScale, scale);
  if (threadIdx.x == 0) rowScale[r] = scale;
  for (int64_t i = threadIdx.x; i < kp; i += blockDim.x)
    xq[r * kp + i] = i < k ? w8a8Code(src[i], invScale ? invScale[i] : inv) : int8_t(0);
}

/// One warp per output row j and up to kW8Rows activation rows (blockIdx.y): integer dot
/// products (dp4a), exact in int32 whatever the order, then the CPU's epilogue.
template <bool ALIGNED> __global__ void __launch_bounds__(kWarps * 32) w8a8GemvKernel(W8a8Args a) {
  const int lane = int(threadIdx.x & 31);
  const int64_t j = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= a.n) return;
  const int64_t r0 = int64_t(blockIdx.y) * kW8Rows;
  const int rows = int(a.m - r0 < kW8Rows ? a.m - r0 : kW8Rows);
  int32_t acc[kW8Rows];
#pragma unroll
  for (int r = 0; r < kW8Rows; ++r) acc[r] = 0;
  const int8_t *w = a.q + j * a.k;
  if constexpr (ALIGNED) { // k % 16 == 0, rows 16-byte aligned: lane l takes 16-byte chunks l, l + 32, ...
    for (int64_t c = lane; c < a.k / 16; c += 32) {
      const uint4 wv = __ldg(reinterpret_cast<const uint4 *>(w) + c);
#pragma unroll
      for (int r = 0; r < kW8Rows; ++r) {
        if (r >= rows) break;
        const uint4 xv = *(reinterpret_cast<const uint4 *>(a.xq + (r0 + r) * a.kp) + c);
        acc[r] = dot4(wv.w, xv.w, dot4(wv.z, xv.z, dot4(wv.y, xv.y, dot4(wv.x, xv.x, acc[r]))));
      }
    }
  } else {
    for (int64_t i = lane; i < a.k; i += 32) {
      const int32_t wi = w[i];
#pragma unroll
      for (int r = 0; r < kW8Rows; ++r) {
        if (r >= rows) break;
        acc[r] += wi * int32_t(a.xq[(r0 + r) * a.kp + i]);
      }
    }
  }
  const float wScale = halfToFloat(a.scales[j]);
#pragma unroll
  for (int r = 0; r < kW8Rows; ++r) {
    if (r >= rows) break;
    int32_t s = acc[r];
    for (int o = 16; o >= 1; o /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    if (lane == 0) a.y[(r0 + r) * a.n + j] = w8a8Output(s, a.rowScale[r0 + r], wScale, a.bias, j);
  }
}

/// The epilogue after cuBLAS's int8 GEMM: acc [m, n] int32 → y.
__global__ void w8a8EpilogueKernel(W8a8Args a, const int32_t *acc) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.m * a.n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / a.n, j = i % a.n;
    a.y[i] = w8a8Output(acc[i], a.rowScale[r], halfToFloat(a.scales[j]), a.bias, j);
  }
}

/// act_block 32: each block of 32 values of each row quantized and widened back (widenActBlock).
__global__ void widenActKernel(const float *x, float *out, int64_t m, int64_t k) {
  const int64_t perRow = (k + 31) / 32;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * perRow; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / perRow, start = (i % perRow) * 32;
    widenActBlock(x + row * k + start, k - start < 32 ? k - start : 32, out + row * k + start);
  }
}

/// x [count] as the 16-bit operand of a tensor-core GEMM.
__global__ void to16Kernel(const float *x, uint16_t *y, int64_t count, int bf16) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = activationTo16(x[i], bf16 != 0);
}

__global__ void biasKernel(float *y, const float *bias, int64_t m, int64_t n) {
  const int64_t total = m * n;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % n];
}

// ------------------------------------------------------------------ host helpers

cublasComputeType_t computeType(const CudaEnv &env) { return env.tensorMath ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; }

std::string where(const KernelContext &c) { return "node '" + c.spec->source + "' (" + c.spec->op + ")"; }
std::string fail(const KernelContext &c, const std::string &what) { return where(c) + ": " + what; }

const View *at(const KernelContext &c, size_t i) { return i < c.inputs.size() ? c.inputs[i] : nullptr; }

using artifact::intAttr;
std::string stringAttr(const artifact::KernelSpec &k, const char *name) { return artifact::stringAttr(k, name, ""); }

bool aligned(const void *p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

/// Rows of activations (x [..., k]) and the output's row stride.
int64_t rowsOf(const View &x, int64_t k) { return k ? x.numel() / k : 0; }

/// Blocks of `threads` for a grid-stride loop over `count` items: enough to cover
/// them, at most `perSm` blocks a multiprocessor.
int strideBlocks(const CudaEnv &env, int64_t count, int threads, int perSm = 8) {
  return int(std::min<int64_t>((count + threads - 1) / threads, int64_t(env.properties.multiProcessorCount) * perSm + 1));
}

std::string addBias(const KernelContext &c, CudaEnv &env, float *y, const float *bias, int64_t m, int64_t n) {
  if (!bias || m * n == 0) return "";
  biasKernel<<<strideBlocks(env, m * n, 256), 256, 0, env.stream>>>(y, bias, m, n);
  return launchError(c, "linear bias");
}

/// y [m, n] = x [m, k] · wᵀ (w [n, k], row-major) in fp32 with cuBLAS (+ bias).
std::string gemmXWt(const KernelContext &c, CudaEnv &env, const float *x, const float *w, const float *bias, float *y,
                    int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return "";
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return fail(c, "dimensions exceed cuBLAS's 32-bit sizes");
  if (k == 0) {
    if (auto e = cudaError(c, "clearing the output", cudaMemsetAsync(y, 0, size_t(m * n) * 4, env.stream)); !e.empty()) return e;
    return addBias(c, env, y, bias, m, n);
  }
  if (auto e = blasError(c, "cublasSetStream", cublasSetStream(env.blas, env.stream)); !e.empty()) return e;
  const float one = 1.0f, zero = 0.0f;
  // Column-major: yᵀ [n, m] = (w viewed as [k, n])ᵀ · (x viewed as [k, m]).
  cublasStatus_t s = cublasGemmEx(env.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, w, CUDA_R_32F, int(k), x,
                                  CUDA_R_32F, int(k), &zero, y, CUDA_R_32F, int(n), computeType(env), CUBLAS_GEMM_DEFAULT);
  if (auto e = blasError(c, "cublasGemmEx", s); !e.empty()) return e;
  return addBias(c, env, y, bias, m, n);
}

// ------------------------------------------------------------------ GEMV / dense dispatch

template <int F, bool ALIGNED, int KIND> std::string launchGemv(const KernelContext &c, CudaEnv &env, const LinearArgs &a) {
  const int64_t maxm = a.m <= 1 ? 1 : a.m <= 2 ? 2 : a.m <= 4 ? 4 : 8;
  const int64_t rows = kWarps * (maxm <= 2 ? 2 : 1);
  const int64_t blocks = (a.n + rows - 1) / rows;
  if (blocks > INT32_MAX) return fail(c, "too many output rows for one launch");
  const dim3 grid{unsigned(blocks)}, block{unsigned(kWarps * 32)};
  switch (maxm) {
  case 1: gemvKernel<F, 1, ALIGNED, KIND><<<grid, block, 0, env.stream>>>(a); break;
  case 2: gemvKernel<F, 2, ALIGNED, KIND><<<grid, block, 0, env.stream>>>(a); break;
  case 4: gemvKernel<F, 4, ALIGNED, KIND><<<grid, block, 0, env.stream>>>(a); break;
  default: gemvKernel<F, 8, ALIGNED, KIND><<<grid, block, 0, env.stream>>>(a); break;
  }
  return launchError(c, "linear GEMV");
}

template <int F, bool ALIGNED, int KIND> std::string launchDense(const KernelContext &c, CudaEnv &env, LinearArgs a) {
  std::string error;
  float *w = static_cast<float *>(env.scratch(0, uint64_t(a.n) * uint64_t(a.k) * 4, error));
  if (!w) return fail(c, "no device memory for the dequantized weight: " + error);
  const int64_t per = unitsPerRow<F, KIND>(a.k);
  const int64_t threads = a.n * per, blocks = (threads + 255) / 256;
  if (blocks > INT32_MAX) return fail(c, "the weight is too large to dequantize in one launch");
  if (blocks > 0) {
    denseKernel<F, ALIGNED, KIND><<<unsigned(blocks), 256, 0, env.stream>>>(a, w);
    if (auto e = launchError(c, "linear dequantize"); !e.empty()) return e;
  }
  return gemmXWt(c, env, a.x, w, a.bias, a.y, a.m, a.n, a.k);
}

/// bf16/fp16 weights read as they are by a tensor-core GEMM (LATHE_CUDA_GEMM=tensor):
/// the activations rounded to the weight's type (scratch slot 1), fp32 accumulation.
template <int F> std::string launchHalfGemm(const KernelContext &c, CudaEnv &env, const LinearArgs &a) {
  static_assert(kFloat16<F>);
  if (a.m > INT32_MAX || a.n > INT32_MAX || a.k > INT32_MAX) return fail(c, "dimensions exceed cuBLAS's 32-bit sizes");
  std::string error;
  auto *xh = static_cast<uint16_t *>(env.scratch(1, uint64_t(a.m) * uint64_t(a.k) * 2, error));
  if (!xh) return fail(c, "no device memory for the 16-bit activations: " + error);
  const int64_t count = a.m * a.k;
  to16Kernel<<<strideBlocks(env, count, 256), 256, 0, env.stream>>>(a.x, xh, count, F == kBf16);
  if (auto e = launchError(c, "linear activations to 16 bits"); !e.empty()) return e;
  if (auto e = blasError(c, "cublasSetStream", cublasSetStream(env.blas, env.stream)); !e.empty()) return e;
  const cudaDataType_t type = F == kBf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t s = cublasGemmEx(env.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(a.n), int(a.m), int(a.k), &one, a.q, type, int(a.k), xh, type,
                                  int(a.k), &zero, a.y, CUDA_R_32F, int(a.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (auto e = blasError(c, "cublasGemmEx (16-bit)", s); !e.empty()) return e;
  return addBias(c, env, a.y, a.bias, a.m, a.n);
}

template <int F, bool ALIGNED, int KIND> std::string runPath(const KernelContext &c, CudaEnv &env, const LinearArgs &a) {
  if (a.m == 0 || a.n == 0) return "";
  if (a.m <= kGemvRows) return launchGemv<F, ALIGNED, KIND>(c, env, a);
  if constexpr (kFloat16<F>)
    if (env.tensorMath && a.ldx == a.k && a.ldy == a.n) return launchHalfGemm<F>(c, env, a);
  return launchDense<F, ALIGNED, KIND>(c, env, a);
}

/// The common part of every linear: x, y, m.
void bindActivations(KernelContext &c, LinearArgs &a) {
  const View &x = *c.inputs[0];
  a.x = static_cast<const float *>(x.data);
  a.y = static_cast<float *>(c.outputs[0]->data);
  a.m = rowsOf(x, a.k);
  a.ldx = a.k, a.ldy = a.n;
  a.xAligned = aligned(a.x, 16) && a.k % 4 == 0;
}

// ------------------------------------------------------------------ kernels

std::string runLinearF32(KernelContext &c, CudaEnv &env) {
  const View &x = *c.inputs[0], &w = *c.inputs[1];
  const View *bias = at(c, 2);
  const int64_t k = w.shape[1], n = w.shape[0];
  const int64_t m = k ? x.numel() / k : c.outputs[0]->numel() / (n ? n : 1);
  return gemmXWt(c, env, static_cast<const float *>(x.data), static_cast<const float *>(w.data),
                 bias ? static_cast<const float *>(bias->data) : nullptr, static_cast<float *>(c.outputs[0]->data), m, n, k);
}

/// int8, int4, int3, bf16, fp16 (operands as runtime/cpu/Kernels.cpp quantOperands; shapes already validated).
std::string runQuantLinear(KernelContext &c, CudaEnv &env) {
  const std::string &f = c.spec->weightFormat;
  const bool packed = f == "int4" || f == "int3";
  const bool storage = f == "bf16" || f == "fp16"; // 16-bit floats, no scales
  LinearArgs a;
  const View *q = at(c, 1);
  a.q = static_cast<const uint8_t *>(q->data);
  a.n = q->shape[0];
  a.rowBytes = q->shape[1] * (storage ? 2 : 1);
  a.k = f == "int4" ? 2 * q->shape[1] : f == "int3" ? q->shape[1] / 12 * 32 : q->shape[1];
  if (!storage) a.scales = static_cast<const uint16_t *>(at(c, 2)->data);
  if (packed && at(c, 3)) a.mins = static_cast<const uint16_t *>(at(c, 3)->data);
  const View *bias = at(c, packed ? 4 : f == "int8" ? 3 : 2);
  a.bias = bias ? static_cast<const float *>(bias->data) : nullptr;
  a.group = storage ? (a.k ? a.k : 1) : intAttr(*c.spec, "group_size", a.k);
  if (a.group <= 0) a.group = 1;
  a.groups = (a.k + a.group - 1) / a.group;
  bindActivations(c, a);
  if (a.k == 0) return gemmXWt(c, env, a.x, nullptr, a.bias, a.y, c.outputs[0]->numel() / (a.n ? a.n : 1), a.n, 0);
  if (intAttr(*c.spec, "act_block", 0) != 0 && a.m > 0) { // int8 activations: the rows quantized and widened first
    std::string error;
    auto *widened = static_cast<float *>(env.scratch(2, uint64_t(a.m) * uint64_t(a.k) * 4, error));
    if (!widened) return fail(c, "no device memory for the int8 activations: " + error);
    widenActKernel<<<strideBlocks(env, a.m * ((a.k + 31) / 32), 128, 16), 128, 0, env.stream>>>(a.x, widened, a.m, a.k);
    if (auto e = launchError(c, "linear int8 activations"); !e.empty()) return e;
    a.x = widened;
    a.ldx = a.k;
    a.xAligned = a.k % 4 == 0; // scratch is 256-byte aligned
  }
  if (f == "int8") {
    if (chunked<kInt8>(a) && aligned(a.q, 16)) return runPath<kInt8, true, kChunked>(c, env, a);
    return runPath<kInt8, false, kScalar>(c, env, a);
  }
  if (f == "bf16") {
    if (chunked<kBf16>(a) && aligned(a.q, 16)) return runPath<kBf16, true, kChunked>(c, env, a);
    return runPath<kBf16, false, kScalar>(c, env, a);
  }
  if (f == "fp16") {
    if (chunked<kF16>(a) && aligned(a.q, 16)) return runPath<kF16, true, kChunked>(c, env, a);
    return runPath<kF16, false, kScalar>(c, env, a);
  }
  if (f == "int4") {
    if (aligned(a.q, 16)) return runPath<kInt4, true, kChunked>(c, env, a);
    return launchDense<kInt4, false, kChunked>(c, env, a); // unaligned weights (never from the runtime's allocator)
  }
  if (aligned(a.q, 4)) return runPath<kInt3, true, kChunked>(c, env, a);
  return launchDense<kInt3, false, kChunked>(c, env, a);
}

/// nm-f32 (x, values f32 [n, k/2], indices, bias?) and nm-int4 (x, codes u8 [n, k/4], indices, scales, bias?).
std::string runNmLinear(KernelContext &c, CudaEnv &env) {
  const bool int4 = c.spec->weightFormat == "nm-int4";
  LinearArgs a;
  const View *values = at(c, 1), *indices = at(c, 2);
  a.q = static_cast<const uint8_t *>(values->data);
  a.indices = static_cast<const uint8_t *>(indices->data);
  a.n = values->shape[0];
  a.k = intAttr(*c.spec, "in_features", 0);
  a.rowBytes = int4 ? a.k / 4 : a.k / 2 * 4;
  a.pattern = stringAttr(*c.spec, "pattern") == "4:8" ? 8 : 4;
  if (int4) {
    a.scales = static_cast<const uint16_t *>(at(c, 3)->data);
    a.group = intAttr(*c.spec, "group_size", 32);
    a.groups = (a.k + a.group - 1) / a.group;
  }
  const View *bias = at(c, int4 ? 4 : 3);
  a.bias = bias ? static_cast<const float *>(bias->data) : nullptr;
  bindActivations(c, a);
  const bool ok = aligned(a.q, int4 ? 8 : 16) && aligned(a.indices, a.pattern == 8 ? 8 : 4);
  if (int4) return ok ? runPath<kNmInt4, true, kNm>(c, env, a) : launchDense<kNmInt4, false, kNm>(c, env, a);
  return ok ? runPath<kNmF32, true, kNm>(c, env, a) : launchDense<kNmF32, false, kNm>(c, env, a);
}

/// Batch strides (in matrices) of `dims` broadcast to `batch` (right-aligned; 0 on broadcast dims).
std::vector<int64_t> batchStrides(const std::vector<int64_t> &dims, const std::vector<int64_t> &batch) {
  std::vector<int64_t> s(batch.size(), 0);
  int64_t stride = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    const size_t d = dims.size() - 1 - i, b = batch.size() - 1 - i;
    s[b] = dims[d] == 1 ? 0 : stride;
    stride *= dims[d];
  }
  return s;
}

std::string runMatmul(KernelContext &c, CudaEnv &env) {
  std::vector<int64_t> a = c.inputs[0]->shape, b = c.inputs[1]->shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
  const std::vector<int64_t> aBatch(a.begin(), a.end() - 2), bBatch(b.begin(), b.end() - 2);
  std::vector<int64_t> batch(std::max(aBatch.size(), bBatch.size()), 1);
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t da = i < aBatch.size() ? aBatch[aBatch.size() - 1 - i] : 1, db = i < bBatch.size() ? bBatch[bBatch.size() - 1 - i] : 1;
    batch[batch.size() - 1 - i] = da == 1 ? db : da;
  }
  const std::vector<int64_t> sa = batchStrides(aBatch, batch), sb = batchStrides(bBatch, batch);
  int64_t batches = 1;
  for (int64_t d : batch) batches *= d;
  const float *pa = static_cast<const float *>(c.inputs[0]->data), *pb = static_cast<const float *>(c.inputs[1]->data);
  float *pc = static_cast<float *>(c.outputs[0]->data);
  if (batches == 0 || m == 0 || n == 0) return "";
  if (k == 0) return cudaError(c, "clearing the output", cudaMemsetAsync(pc, 0, size_t(batches * m * n) * 4, env.stream));
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return fail(c, "dimensions exceed cuBLAS's 32-bit sizes");
  if (auto e = blasError(c, "cublasSetStream", cublasSetStream(env.blas, env.stream)); !e.empty()) return e;
  const float one = 1.0f, zero = 0.0f;
  // Row-major C = A·B is column-major Cᵀ [n, m] = Bᵀ [n, k] · Aᵀ [k, m].
  auto strided = [&](const float *A, const float *B, float *C, int64_t strideA, int64_t strideB, int64_t count) {
    return cublasGemmStridedBatchedEx(env.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), int(k), &one, B, CUDA_R_32F, int(n),
                                      strideB * k * n, A, CUDA_R_32F, int(k), strideA * m * k, &zero, C, CUDA_R_32F, int(n), m * n,
                                      int(count), computeType(env), CUBLAS_GEMM_DEFAULT);
  };
  // Offsets of batch index `bi` (in matrices), as the CPU computes them.
  auto offsets = [&](int64_t bi, int64_t &offA, int64_t &offB) {
    offA = offB = 0;
    for (int64_t d = int64_t(batch.size()) - 1; d >= 0; --d) {
      const int64_t idx = bi % batch[size_t(d)];
      bi /= batch[size_t(d)];
      offA += idx * sa[size_t(d)], offB += idx * sb[size_t(d)];
    }
  };
  // One call when both operands' offsets are linear in the batch index.
  int64_t a1 = 0, b1 = 0;
  if (batches > 1) offsets(1, a1, b1);
  bool linear = batches <= INT32_MAX;
  for (int64_t bi = 0; bi < batches && linear; ++bi) {
    int64_t oa, ob;
    offsets(bi, oa, ob);
    linear = oa == bi * a1 && ob == bi * b1;
  }
  if (linear) return blasError(c, "cublasGemmStridedBatchedEx", strided(pa, pb, pc, a1, b1, batches));
  // Otherwise one strided call per index of the outer dims over the innermost batch dim.
  const int64_t inner = batch.empty() ? 1 : batch.back(), outer = batches / inner;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t oa, ob;
    offsets(o * inner, oa, ob);
    const cublasStatus_t s = strided(pa + oa * m * k, pb + ob * k * n, pc + o * inner * m * n, sa.empty() ? 0 : sa.back(), sb.empty() ? 0 : sb.back(), inner);
    if (auto e = blasError(c, "cublasGemmStridedBatchedEx", s); !e.empty()) return e;
  }
  return "";
}

// ------------------------------------------------------------------ checks

DType dtypeOf(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k, size_t operand, bool &present) {
  present = operand < k.inputs.size() && k.inputs[operand] >= 0 && size_t(k.inputs[operand]) < spec.tensors.size();
  return present ? spec.tensors[size_t(k.inputs[operand])].dtype : DType::F32;
}
std::string needF32(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k, size_t operand, const char *what) {
  bool present = false;
  const DType t = dtypeOf(spec, k, operand, present);
  if (present && t != DType::F32)
    return std::string("the CUDA ") + k.op + " kernel needs f32 " + what + ", found " + artifact::dtypeName(t);
  return "";
}
std::string checkActivations(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  return needF32(spec, k, 0, "activations");
}
/// int8/int4 with int8 activations (act_block 32) run too: the input rows are
/// quantized per block by the CPU's rule and widened first (widenActKernel).
std::string checkQuantLinear(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  const int64_t block = artifact::intAttr(k, "act_block", 0);
  if (block != 0 && block != 32) return "act_block " + std::to_string(block) + " (only 32 is defined): runs on the host";
  return checkActivations(spec, k);
}
std::string checkLinearF32(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  if (auto e = needF32(spec, k, 0, "activations"); !e.empty()) return e;
  return needF32(spec, k, 1, "weights");
}
std::string checkMatmul(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  if (auto e = needF32(spec, k, 0, "operands"); !e.empty()) return e;
  return needF32(spec, k, 1, "operands");
}
/// w8a8: (x, q i8 [n, k], scales f16 [n, 1], act_scales f32 [k]?, bias?), attribute
/// act_scale (0: dynamic per row). The activations quantized on the device by the CPU's
/// rule (scratch slot 2: codes, then row scales), integer products, the CPU's epilogue:
/// the same bits as the CPU's int8 tables.
std::string runW8a8(KernelContext &c, CudaEnv &env) {
  W8a8Args a;
  const View &x = *c.inputs[0], *q = at(c, 1), *actScales = at(c, 3), *bias = at(c, 4);
  a.q = static_cast<const int8_t *>(q->data);
  a.scales = static_cast<const uint16_t *>(at(c, 2)->data);
  a.bias = bias ? static_cast<const float *>(bias->data) : nullptr;
  a.n = q->shape[0], a.k = q->shape[1], a.kp = (a.k + 15) / 16 * 16;
  a.m = a.k ? x.numel() / a.k : 0;
  a.y = static_cast<float *>(c.outputs[0]->data);
  if (a.m == 0 || a.n == 0) return "";
  if (a.k == 0) return gemmXWt(c, env, nullptr, nullptr, a.bias, a.y, c.outputs[0]->numel() / a.n, a.n, 0);
  const float tensorScale = float(artifact::floatAttr(*c.spec, "act_scale", 0.0));
  std::string error;
  const uint64_t codeBytes = (uint64_t(a.m) * uint64_t(a.kp) + 255) / 256 * 256;
  auto *scratch = static_cast<uint8_t *>(env.scratch(2, codeBytes + uint64_t(a.m) * 4, error));
  if (!scratch) return fail(c, "no device memory for the int8 activations: " + error);
  auto *xq = reinterpret_cast<int8_t *>(scratch);
  auto *rowScale = reinterpret_cast<float *>(scratch + codeBytes);
  if (a.m > INT32_MAX) return fail(c, "too many activation rows for one launch");
  w8a8QuantizeKernel<<<unsigned(a.m), 256, 0, env.stream>>>(static_cast<const float *>(x.data), a.k, a.kp,
                                                             actScales ? static_cast<const float *>(actScales->data) : nullptr,
                                                             tensorScale, xq, rowScale);
  if (auto e = launchError(c, "w8a8 activation quantization"); !e.empty()) return e;
  a.xq = xq, a.rowScale = rowScale;
  if (a.m > kW8CublasRows && a.n <= INT32_MAX && a.k <= INT32_MAX) {
    // Many rows: cuBLAS's int8 GEMM into int32 (exact), when it takes these shapes, then the epilogue.
    auto *acc = static_cast<int32_t *>(env.scratch(3, uint64_t(a.m) * uint64_t(a.n) * 4, error));
    if (!acc) return fail(c, "no device memory for the int32 products: " + error);
    if (auto e = blasError(c, "cublasSetStream", cublasSetStream(env.blas, env.stream)); !e.empty()) return e;
    const int32_t one = 1, zero = 0;
    const cublasStatus_t s = cublasGemmEx(env.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(a.n), int(a.m), int(a.k), &one, a.q, CUDA_R_8I, int(a.k),
                                          a.xq, CUDA_R_8I, int(a.kp), &zero, acc, CUDA_R_32I, int(a.n), CUBLAS_COMPUTE_32I,
                                          CUBLAS_GEMM_DEFAULT);
    if (s == CUBLAS_STATUS_SUCCESS) {
      w8a8EpilogueKernel<<<strideBlocks(env, a.m * a.n, 256), 256, 0, env.stream>>>(a, acc);
      return launchError(c, "w8a8 epilogue");
    }
    if (s != CUBLAS_STATUS_NOT_SUPPORTED && s != CUBLAS_STATUS_INVALID_VALUE) return blasError(c, "cublasGemmEx (int8)", s);
    // Shapes cuBLAS's int8 kernels do not take (k not a multiple of 4, ...): the GEMV per 8 rows.
  }
  const int64_t blocksX = (a.n + kWarps - 1) / kWarps, blocksY = (a.m + kW8Rows - 1) / kW8Rows;
  if (blocksX > INT32_MAX || blocksY > 65535) return fail(c, "too many rows for one launch");
  const dim3 grid{unsigned(blocksX), unsigned(blocksY)}, block{unsigned(kWarps * 32)};
  if (a.k % 16 == 0 && aligned(a.q, 16)) w8a8GemvKernel<true><<<grid, block, 0, env.stream>>>(a);
  else w8a8GemvKernel<false><<<grid, block, 0, env.stream>>>(a);
  return launchError(c, "w8a8 GEMV");
}

/// bitmap-f32: (x, values f32 [nnz], masks u8 [n, k/8], bias?), attribute in_features.
/// Each row's start is computed once per weight (bitmapRowStarts); up to 8 rows the
/// GEMV reads the compressed weight, more rows multiply it decompressed with cuBLAS.
std::string runBitmapLinear(KernelContext &c, CudaEnv &env) {
  BitmapDev a;
  const View &x = *c.inputs[0], *values = at(c, 1), *masks = at(c, 2), *bias = at(c, 3);
  a.k = intAttr(*c.spec, "in_features", 0);
  a.n = masks->shape[0];
  a.masks = static_cast<const uint8_t *>(masks->data);
  a.values = static_cast<const float *>(values->data);
  a.bias = bias ? static_cast<const float *>(bias->data) : nullptr;
  a.x = static_cast<const float *>(x.data);
  a.y = static_cast<float *>(c.outputs[0]->data);
  a.m = a.k ? x.numel() / a.k : 0;
  a.ldx = a.k, a.ldy = a.n;
  if (a.m == 0 || a.n == 0) return "";
  const int64_t blocks = (a.n + kWarps - 1) / kWarps;
  if (blocks > INT32_MAX) return fail(c, "too many output rows for one launch");
  int64_t *&starts = env.bitmapRowStarts[{masks->data, a.n, a.k}];
  if (!starts) {
    if (auto e = cudaError(c, "allocating the bitmap's row starts", cudaMalloc(reinterpret_cast<void **>(&starts), size_t(a.n) * 8)); !e.empty()) {
      env.bitmapRowStarts.erase({masks->data, a.n, a.k});
      return e;
    }
    bitmapRowCountKernel<<<unsigned(blocks), kWarps * 32, 0, env.stream>>>(a.masks, a.n, a.k, starts);
    if (auto e = launchError(c, "bitmap row counts"); !e.empty()) return e;
    exclusiveScanKernel<<<1, 1024, 0, env.stream>>>(starts, a.n);
    if (auto e = launchError(c, "bitmap row starts"); !e.empty()) return e;
  }
  a.starts = starts;
  const dim3 grid{unsigned(blocks)}, block{unsigned(kWarps * 32)};
  if (a.m <= kGemvRows) {
    switch (a.m <= 1 ? 1 : a.m <= 2 ? 2 : a.m <= 4 ? 4 : 8) {
    case 1: bitmapGemvKernel<1><<<grid, block, 0, env.stream>>>(a); break;
    case 2: bitmapGemvKernel<2><<<grid, block, 0, env.stream>>>(a); break;
    case 4: bitmapGemvKernel<4><<<grid, block, 0, env.stream>>>(a); break;
    default: bitmapGemvKernel<8><<<grid, block, 0, env.stream>>>(a); break;
    }
    return launchError(c, "bitmap GEMV");
  }
  std::string error;
  float *w = static_cast<float *>(env.scratch(0, uint64_t(a.n) * uint64_t(a.k) * 4, error));
  if (!w) return fail(c, "no device memory for the decompressed weight: " + error);
  bitmapDenseKernel<<<grid, block, 0, env.stream>>>(a, w);
  if (auto e = launchError(c, "bitmap decompress"); !e.empty()) return e;
  return gemmXWt(c, env, a.x, w, a.bias, a.y, a.m, a.n, a.k);
}

std::string checkW8a8(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  if (auto e = needF32(spec, k, 0, "activations"); !e.empty()) return e;
  bool present = false;
  if (dtypeOf(spec, k, 1, present) != DType::I8 || !present) return "w8a8 weights that are not i8: runs on the host";
  return "";
}
std::string checkBitmap(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &k) {
  if (auto e = needF32(spec, k, 0, "activations"); !e.empty()) return e;
  return needF32(spec, k, 1, "values");
}

} // namespace

void registerLinearKernels() {
  addDeviceKernel("linear", "f32", {runLinearF32, checkLinearF32});
  for (const char *format : {"int8", "int4", "int3", "bf16", "fp16"}) addDeviceKernel("linear", format, {runQuantLinear, checkQuantLinear});
  for (const char *format : {"nm-f32", "nm-int4"}) addDeviceKernel("linear", format, {runNmLinear, checkActivations});
  addDeviceKernel("linear", "w8a8", {runW8a8, checkW8a8});
  addDeviceKernel("linear", "bitmap-f32", {runBitmapLinear, checkBitmap});
  addDeviceKernel("matmul", "f32", {runMatmul, checkMatmul});
}

} // namespace lathe::cuda
