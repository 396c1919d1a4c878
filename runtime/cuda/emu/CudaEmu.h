// The CUDA emulator: the subset of the CUDA runtime, device intrinsics and
// cuBLAS that the CUDA plugin uses, implemented on the host, so that the
// plugin's own kernels (LinearKernels.cu, GraphKernels.cu, rewritten by
// rewrite_launches.py: `k<<<g, b, s, st>>>(args)` becomes an emu::launch call)
// run on a machine without a GPU. Built as liblathe-cuda-emu.so; loaded with
// LATHE_CUDA_PLUGIN=<path>. It is a checker, not a backend: kernels run one
// block at a time, each thread a fiber, switched at barriers and warp
// shuffles; what the hardware would reject or leave undefined is reported:
//
//   - __syncthreads reached while other threads of the block returned, or
//     warp shuffles whose lanes are not all present, or lanes at different
//     warp operations (the kernel is abandoned, the launch reports an error);
//   - launch configurations the device refuses (block > 1024 threads, grid y/z >
//     65535, dynamic shared memory above 48 KiB without the attribute);
//   - shared memory read before any thread wrote it (it starts as 0xFF bytes:
//     NaN floats, -1 integers, as garbage would on the device);
//   - device memory touched outside its allocation (guard pages; the fault
//     names the kernel, block and thread), host pointers in device copies,
//     copies and memsets past an allocation's end;
//   - misaligned vector loads (uint4/float4 are 16-byte aligned types and the
//     emulator is built with -fsanitize=alignment);
//   - cuBLAS calls with leading dimensions or type combinations cuBLAS rejects,
//     or operands outside device memory.
//
// Scheduling is warp-greedy: the first warp that can run goes on until all its
// lanes wait at __syncthreads or returned, so a fast warp overwrites shared
// memory that slower warps have not read yet when a barrier is missing (and
// unwritten shared memory reads as NaN / -1). LATHE_CUDA_EMU_ORDER=reverse runs
// warps, lanes and blocks from the last, which exposes the mirror-image races.
//
// The per-thread math headers (LinearMath.h, GraphMath.h) take their device
// branches here (LATHE_DEVICE_BRANCH): vector loads through __ldg, __dp4a,
// __byte_perm, __fmul_rn, as nvcc compiles them; the unit tests run the host branches.
//
// Only this emulator's headers are on the include path of the emulated build
// (runtime/cuda/emu/include/{cuda_runtime,cublas_v2,cublasLt}.h include this file).
#pragma once

#if !defined(__x86_64__)
#error "the CUDA emulator switches fibers with x86-64 code; it is built on x86-64 only"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define LATHE_CUDA_EMU 1
#define CUDART_VERSION emulated

// ------------------------------------------------------------------ qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static // one block runs at a time: a static local is that block's shared memory

// ------------------------------------------------------------------ vector types
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// The running thread's coordinates (set by the scheduler before each fiber runs).
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

using std::max;
using std::min;

// ------------------------------------------------------------------ runtime API
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
struct CUstream_st;
using cudaStream_t = CUstream_st *;
struct CUevent_st;
using cudaEvent_t = CUevent_st *;
constexpr unsigned cudaStreamNonBlocking = 1;

struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
  size_t sharedMemPerBlock, sharedMemPerBlockOptin;
  int multiProcessorCount, maxThreadsPerBlock, warpSize, l2CacheSize;
};
enum cudaDeviceAttr {
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

const char *cudaGetErrorString(cudaError_t status);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int ordinal);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *properties, int ordinal);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attribute, int ordinal);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void **pointer, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **pointer, size_t bytes) { return cudaMalloc(reinterpret_cast<void **>(pointer), bytes); }
cudaError_t cudaFree(void *pointer);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

namespace emu {
cudaError_t setFunctionAttribute(const void *kernel, cudaFuncAttribute attribute, int value);
}
template <class F> cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attribute, int value) {
  return emu::setFunctionAttribute(reinterpret_cast<const void *>(kernel), attribute, value);
}

// ------------------------------------------------------------------ cuBLAS
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_8I = 3, CUDA_R_32I = 10, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77, CUBLAS_COMPUTE_32I = 72 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
struct cublasContext;
using cublasHandle_t = cublasContext *;
struct cublasLtContext;
using cublasLtHandle_t = cublasLtContext *;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
const char *cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B, cudaDataType_t Btype,
                            int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, long long strideA,
                                          const void *B, cudaDataType_t Btype, int ldb, long long strideB, const void *beta, void *C,
                                          cudaDataType_t Ctype, int ldc, long long strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);

// ------------------------------------------------------------------ device intrinsics
namespace emu {
void syncThreads();
void syncWarp(unsigned mask);
enum ShuffleKind : int { kShflXor = 1, kShflUp = 2, kShflIdx = 3, kSyncWarp = 4 };
/// Exchanges `bits` among the lanes of `mask`; returns the source lane's bits.
uint64_t shuffle(ShuffleKind kind, unsigned mask, uint64_t bits, int operand, int width);
[[noreturn]] void misaligned(const void *p, unsigned bytes, const char *what);
inline void checkAligned(const void *p, unsigned bytes, const char *what) {
  if (reinterpret_cast<uintptr_t>(p) % bytes) misaligned(p, bytes, what);
}

template <class T> T shuffleAs(ShuffleKind kind, unsigned mask, T v, int operand, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move values of up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle(kind, mask, bits, operand, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
} // namespace emu

inline void __syncthreads() { emu::syncThreads(); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { emu::syncWarp(mask); }
template <class T> T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  return emu::shuffleAs(emu::kShflXor, mask, v, laneMask, width);
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shuffleAs(emu::kShflUp, mask, v, int(delta), width);
}
template <class T> T __shfl_sync(unsigned mask, T v, int srcLane, int width = 32) {
  return emu::shuffleAs(emu::kShflIdx, mask, v, srcLane, width);
}
template <class T> T __ldg(const T *p) {
  if constexpr (alignof(T) > 1) emu::checkAligned(p, alignof(T), "__ldg");
  return *p;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline float __fmul_rn(float a, float b) { return a * b; } // the emulator is built with -ffp-contract=off
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
}
inline int __dp4a(unsigned a, unsigned b, int c) { return __dp4a(int(a), int(b), c); }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t both = uint64_t(y) << 32 | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= unsigned(both >> (8 * ((s >> (4 * i)) & 7)) & 0xFF) << (8 * i);
  return r;
}

// ------------------------------------------------------------------ launches
namespace emu {
struct LaunchConfig {
  dim3 grid, block;
  size_t sharedBytes = 0;
  cudaStream_t stream = nullptr;
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), sharedBytes(s), stream(st) {}
};
/// Runs `invoke(context)` as every thread of every block (the kernel's body with its arguments).
void runKernel(const char *name, const void *kernel, const LaunchConfig &config, void (*invoke)(void *), void *context);
/// This block's dynamic shared memory (`extern __shared__ T name[]`).
void *dynamicShared();
/// Fills a static __shared__ variable with 0xFF the first time a thread of the current block declares it.
void sharedDeclared(void *address, size_t bytes);

/// A launch as rewrite_launches.py writes it: `body` is a captureless lambda that calls
/// the kernel with its arguments (so template arguments are deduced as nvcc deduces
/// them), `address` the kernel's address when it is not a deduced template (for
/// cudaFuncSetAttribute), else null.
template <class Body, class... A>
void launch(const char *name, const void *address, const LaunchConfig &config, Body, A &&...args) {
  struct Context {
    std::tuple<std::decay_t<A>...> arguments; // copied at launch, as CUDA copies kernel parameters
  } context{std::tuple<std::decay_t<A>...>(std::forward<A>(args)...)};
  runKernel(name, address, config, [](void *c) { std::apply(Body{}, static_cast<Context *>(c)->arguments); }, &context);
}
} // namespace emu
