// The CUDA emulator's own tests (runtime/cuda/emu): kernels written here are
// rewritten by rewrite_launches.py like the plugin's and run on the emulated
// device. Correct kernels must give the right values (block reductions, warp
// shuffles with widths, a prefix scan, dynamic shared memory, cuBLAS against
// a naive product); broken ones (a missing barrier, a barrier after an early
// return, a shuffle naming a lane that returned, a deadlock, an access past an
// allocation, a misaligned vector load, a bad launch configuration, cuBLAS
// arguments cuBLAS rejects) must be reported, naming the kernel. Cases that
// end the process run in a forked child whose exit and stderr are checked.
//
// Usage: lathe-cuda-emu-selftest   (exit 0: every case behaved; 1: a case did not)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

int failures = 0;
void expect(bool ok, const std::string &what) {
  std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <class T> T *deviceArray(const std::vector<T> &host) {
  T *d = nullptr;
  if (cudaMalloc(&d, host.size() * sizeof(T)) != cudaSuccess) std::abort();
  cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T> std::vector<T> hostArray(const T *d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

// ------------------------------------------------------------------ kernels that are right

__global__ void blockSumKernel(const float *x, float *y, int n) {
  __shared__ float partial[32];
  float v = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[blockIdx.x * n + i];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float w = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o /= 2) w += __shfl_xor_sync(0xFFFFFFFFu, w, o);
    if (threadIdx.x == 0) y[blockIdx.x] = w;
  }
}

/// out[t] = the three shuffles of lane value t: xor 1 within width 8, up 3 within width 16, idx 5 within width 4.
__global__ void shuffleKernel(int *out) {
  const int t = threadIdx.x;
  out[3 * t] = __shfl_xor_sync(0xFFFFFFFFu, t, 1, 8);
  out[3 * t + 1] = __shfl_up_sync(0xFFFFFFFFu, t, 3, 16);
  out[3 * t + 2] = __shfl_sync(0xFFFFFFFFu, t, 5, 4);
}

/// Inclusive scan of one block of 256 through shared memory (Hillis-Steele).
__global__ void scanKernel(int *v) {
  __shared__ int buffer[256];
  buffer[threadIdx.x] = v[threadIdx.x];
  __syncthreads();
  for (int o = 1; o < 256; o *= 2) {
    const int t = int(threadIdx.x) >= o ? buffer[threadIdx.x - o] : 0;
    __syncthreads();
    buffer[threadIdx.x] += t;
    __syncthreads();
  }
  v[threadIdx.x] = buffer[threadIdx.x];
}

/// Reverses each block's slice through dynamic shared memory.
__global__ void reverseKernel(const float *x, float *y) {
  extern __shared__ float smem[];
  const int n = blockDim.x;
  smem[threadIdx.x] = x[blockIdx.x * n + threadIdx.x];
  __syncthreads();
  y[blockIdx.x * n + threadIdx.x] = smem[n - 1 - threadIdx.x];
}

// ------------------------------------------------------------------ kernels that are wrong

/// Reads a neighbour's shared value without a barrier in between.
__global__ void missingBarrierKernel(int *out) {
  __shared__ int s[64];
  s[threadIdx.x] = int(threadIdx.x);
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

/// Two block sums reusing one shared array, without the barrier between the
/// last read of the first result and the second sum's writes.
__global__ void reuseWithoutBarrierKernel(const float *x, float *y) {
  __shared__ float partial[32];
  float results[2];
  for (int pass = 0; pass < 2; ++pass) {
    float v = x[pass * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += partial[w];
    results[pass] = total; // (a __syncthreads belongs here)
  }
  y[threadIdx.x] = results[0] + 10.0f * results[1];
}

__global__ void barrierAfterReturnKernel(int *out, int n) {
  if (int(threadIdx.x) >= n) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void shuffleAfterReturnKernel(float *out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, 1.0f, 1);
}

/// Lanes 0-15 wait at a shuffle of the whole warp, lanes 16-31 at __syncthreads.
__global__ void deadlockKernel(float *out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, 1.0f, 1);
  else __syncthreads();
}

/// Thread 0 stays within the allocation's 256-byte rounding; threads 1-3 land in the guard page after it.
__global__ void pastTheEndKernel(float *x, int n) { x[n + threadIdx.x * 64] = 1.0f; }

__global__ void misalignedKernel(const unsigned char *p, unsigned *out) {
  const uint4 v = __ldg(reinterpret_cast<const uint4 *>(p + 4));
  out[0] = v.x;
}

template <class T> __global__ void fillKernel(T *x, T v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = v;
}

// ------------------------------------------------------------------ harness

/// Runs f in a child process; returns its exit status (or 128 + signal) and what it wrote to stderr.
int inChild(const std::function<void()> &f, std::string &stderrText) {
  int pipeFds[2];
  if (pipe(pipeFds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipeFds[1], 2);
    close(pipeFds[0]);
    f();
    std::_Exit(0);
  }
  close(pipeFds[1]);
  char buffer[4096];
  ssize_t got;
  stderrText.clear();
  while ((got = read(pipeFds[0], buffer, sizeof buffer)) > 0) stderrText.append(buffer, size_t(got));
  close(pipeFds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

void rightKernels() {
  // Block sums of 5 rows of 1000 with 256 threads (8 warps, partial last strides).
  const int rows = 5, n = 1000;
  std::vector<float> x(rows * n);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 7) - 3) * 0.5f;
  float *dx = deviceArray(x), *dy = nullptr;
  cudaMalloc(&dy, rows * sizeof(float));
  blockSumKernel<<<rows, 256>>>(dx, dy, n);
  expect(cudaGetLastError() == cudaSuccess, "block sums launch");
  const std::vector<float> y = hostArray(dy, rows);
  bool same = true;
  for (int r = 0; r < rows; ++r) {
    double want = 0;
    for (int i = 0; i < n; ++i) want += x[size_t(r * n + i)];
    same = same && std::fabs(y[size_t(r)] - want) < 1e-3;
  }
  expect(same, "block sums (warp butterflies, shared partials, one barrier) match the host");

  int *dshuffle = nullptr;
  cudaMalloc(&dshuffle, 32 * 3 * sizeof(int));
  shuffleKernel<<<1, 32>>>(dshuffle);
  const std::vector<int> s = hostArray(dshuffle, 96);
  bool shuffles = true;
  for (int t = 0; t < 32; ++t) {
    const int xorWant = t ^ 1, upWant = t % 16 >= 3 ? t - 3 : t, idxWant = (t & ~3) + 1;
    shuffles = shuffles && s[size_t(3 * t)] == xorWant && s[size_t(3 * t + 1)] == upWant && s[size_t(3 * t + 2)] == idxWant;
  }
  expect(shuffles, "__shfl_xor_sync / __shfl_up_sync / __shfl_sync with widths 8, 16 and 4 (source lane modulo width)");

  std::vector<int> v(256);
  for (int i = 0; i < 256; ++i) v[size_t(i)] = i % 5;
  int *dv = deviceArray(v);
  scanKernel<<<1, 256>>>(dv);
  const std::vector<int> scanned = hostArray(dv, 256);
  int running = 0;
  bool scanOk = true;
  for (int i = 0; i < 256; ++i) running += v[size_t(i)], scanOk = scanOk && scanned[size_t(i)] == running;
  expect(scanOk, "a 256-thread shared-memory scan (two barriers per step)");

  std::vector<float> r(3 * 64);
  for (size_t i = 0; i < r.size(); ++i) r[i] = float(i);
  float *dr = deviceArray(r), *dout = nullptr;
  cudaMalloc(&dout, r.size() * sizeof(float));
  reverseKernel<<<3, 64, 64 * sizeof(float)>>>(dr, dout);
  const std::vector<float> rev = hostArray(dout, r.size());
  bool reversed = true;
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 64; ++t) reversed = reversed && rev[size_t(b * 64 + t)] == r[size_t(b * 64 + 63 - t)];
  expect(reversed, "dynamic shared memory (extern __shared__) per block");

  // A template kernel launched without template arguments: deduced from the arguments.
  fillKernel<<<2, 32>>>(dout, 2.5f, 100);
  const std::vector<float> filled = hostArray(dout, 100);
  expect(filled[0] == 2.5f && filled[99] == 2.5f, "a deduced template kernel in a grid-stride loop");

  // cuBLAS: C (column-major 3x2) = op(A) op(B) with A stored transposed, against a naive product.
  cublasHandle_t h = nullptr;
  cublasCreate(&h);
  const int m = 3, nn = 2, k = 4;
  std::vector<float> A(k * m), B(k * nn), C(m * nn, NAN);
  for (int i = 0; i < k * m; ++i) A[size_t(i)] = float(i % 5) - 1.0f;
  for (int i = 0; i < k * nn; ++i) B[size_t(i)] = float(i % 3) + 0.25f;
  float *dA = deviceArray(A), *dB = deviceArray(B), *dC = deviceArray(C);
  const float one = 1.0f, zero = 0.0f;
  cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, dA, CUDA_R_32F, k, dB, CUDA_R_32F, k, &zero, dC,
                                   CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  const std::vector<float> c = hostArray(dC, size_t(m * nn));
  bool gemmOk = st == CUBLAS_STATUS_SUCCESS;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < nn; ++j) {
      float want = 0;
      for (int p = 0; p < k; ++p) want += A[size_t(p + i * k)] * B[size_t(p + j * k)];
      gemmOk = gemmOk && std::fabs(c[size_t(i + j * m)] - want) < 1e-5f;
    }
  expect(gemmOk, "cublasGemmEx (T, N) against a naive product; beta 0 ignores the NaN already in C");
  st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, dA, CUDA_R_32F, k - 1, dB, CUDA_R_32F, k, &zero, dC, CUDA_R_32F, m,
                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  expect(st == CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx with lda below op(A)'s stored rows: CUBLAS_STATUS_INVALID_VALUE");
  st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, dA, CUDA_R_16F, k, dB, CUDA_R_32F, k, &zero, dC, CUDA_R_32F, m,
                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  expect(st == CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx with mixed half/float operands: CUBLAS_STATUS_NOT_SUPPORTED");
  cublasDestroy(h);

  // Launch configurations the device refuses.
  blockSumKernel<<<1, 2048>>>(dx, dy, n);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of 2048 threads: invalid configuration");
  expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears a launch error");
  reverseKernel<<<1, 64, 64 * 1024>>>(dr, dout);
  expect(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory without cudaFuncSetAttribute: refused");
  expect(cudaFuncSetAttribute(reverseKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess &&
             (reverseKernel<<<1, 64, 64 * 1024>>>(dr, dout), cudaGetLastError() == cudaSuccess),
         "64 KiB of dynamic shared memory after cudaFuncSetAttribute: runs");

  // Copies that name host memory as device memory, or run past an allocation.
  float hostBuffer[4] = {};
  expect(cudaMemcpy(hostBuffer, hostBuffer + 1, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
         "cudaMemcpy DeviceToHost from host memory: invalid argument");
  expect(cudaMemcpy(dx, x.data(), (x.size() + 1) * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
         "cudaMemcpy past the end of an allocation: invalid argument");
  expect(cudaFree(hostBuffer) == cudaErrorInvalidDevicePointer, "cudaFree of host memory: invalid device pointer");
  cudaFree(dx), cudaFree(dy), cudaFree(dshuffle), cudaFree(dv), cudaFree(dr), cudaFree(dout), cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

/// A kernel error is sticky: the launch reports it, and so does every later call.
void expectKernelError(const char *what, const std::function<void()> &launch, const std::vector<std::string> &mustSay) {
  std::string err;
  const int status = inChild([&] {
    launch();
    const cudaError_t s = cudaGetLastError();
    std::fprintf(stderr, "status=%d later=%d message=%s\n", int(s), int(cudaDeviceSynchronize()), cudaGetErrorString(s));
    std::_Exit(s == cudaErrorLaunchFailure ? 0 : 3);
  }, err);
  bool said = true;
  for (const std::string &part : mustSay) said = said && contains(err, part);
  expect(status == 0 && said && contains(err, "later=719"), std::string(what) + ": " + (status == 0 ? "" : "child exit " + std::to_string(status) + ": ") + err.substr(0, 400));
}

void wrongKernels() {
  std::string err;
  // The first thread to run reads a neighbour's slot before the neighbour wrote it: the poisoned 0xFF bytes (-1).
  int status = inChild([] {
    int *d = nullptr;
    cudaMalloc(&d, 64 * sizeof(int));
    missingBarrierKernel<<<1, 64>>>(d);
    const std::vector<int> out = hostArray(d, 64);
    std::_Exit(std::count(out.begin(), out.end(), -1) > 0 ? 0 : 4);
  }, err);
  expect(status == 0, "a missing __syncthreads reads unwritten (0xFF) shared memory");

  // A fast warp writes the second sum's partial over the first before slower warps read it.
  status = inChild([] {
    std::vector<float> x(2 * 128);
    for (int i = 0; i < 256; ++i) x[size_t(i)] = i < 128 ? 1.0f : 2.0f;
    float *dx = deviceArray(x), *dy = nullptr;
    cudaMalloc(&dy, 128 * sizeof(float));
    reuseWithoutBarrierKernel<<<1, 128>>>(dx, dy);
    const std::vector<float> y = hostArray(dy, 128);
    std::_Exit(std::count(y.begin(), y.end(), 128.0f + 10.0f * 256.0f) < 128 ? 0 : 4);
  }, err);
  expect(status == 0, "shared memory reused without a barrier: a warp racing ahead overwrites what others have not read");

  expectKernelError("__syncthreads after some threads returned", [] {
    int *d = nullptr;
    cudaMalloc(&d, 64 * sizeof(int));
    barrierAfterReturnKernel<<<1, 64>>>(d, 40);
  }, {"kernel 'barrierAfterReturnKernel' block (0,0,0) thread (", "returned", "__syncthreads"});
  expectKernelError("a full-warp shuffle after lanes returned", [] {
    float *d = nullptr;
    cudaMalloc(&d, 32 * sizeof(float));
    shuffleAfterReturnKernel<<<1, 32>>>(d);
  }, {"kernel 'shuffleAfterReturnKernel' block (0,0,0) thread (", "returned"});
  expectKernelError("a deadlock", [] {
    float *d = nullptr;
    cudaMalloc(&d, 32 * sizeof(float));
    deadlockKernel<<<1, 32>>>(d);
  }, {"deadlock: 16 threads wait at __syncthreads, 16 lanes wait at warp operations"});

  status = inChild([] {
    float *d = nullptr;
    cudaMalloc(&d, 100 * sizeof(float));
    pastTheEndKernel<<<1, 4>>>(d, 100);
  }, err);
  expect(status == 128 + SIGSEGV && contains(err, "kernel 'pastTheEndKernel' block (0,0,0) thread (") && contains(err, "invalid memory access") &&
             contains(err, "past the end of a device allocation"),
         "a store past an allocation faults, naming the kernel, block and thread: " + err.substr(0, 300));

  expectKernelError("a misaligned 16-byte load", [] {
    unsigned char *p = nullptr;
    unsigned *o = nullptr;
    cudaMalloc(&p, 64);
    cudaMalloc(&o, 4);
    misalignedKernel<<<1, 1>>>(p, o);
  }, {"kernel 'misalignedKernel'", "not 16-byte aligned"});
}

} // namespace

int main() {
  rightKernels();
  wrongKernels();
  std::printf("%s (%d failed)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
