// Inside the CUDA plugin: the device kernel table and what each kernel gets
// (the stream, cuBLAS handles, a grow-only scratch buffer). Kernels register
// themselves by (op, weight format) like the CPU table; the shapes come from
// the CPU shape functions, so a device kernel only launches work.
#pragma once

#include "runtime/cpu/Kernels.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <tuple>

namespace lathe::cuda {

struct CudaEnv {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t blasLt = nullptr;
  cudaDeviceProp properties{};
  /// LATHE_CUDA_GEMM=tensor: GEMMs of more than a few rows on tensor cores (f32
  /// weights in TF32; bf16/fp16 weights with the activations rounded to the
  /// weight's type), fp32 accumulation. Default (exact): fp32 throughout, for
  /// parity with the CPU path.
  bool tensorMath = false;
  /// Device scratch of at least `bytes`, valid until the next scratch() call
  /// of the same slot (kernels use slots 0..3 for distinct temporaries).
  /// Null and `error` set when the device is out of memory.
  void *scratch(int slot, uint64_t bytes, std::string &error);
  void *scratchBuffers[4] = {nullptr, nullptr, nullptr, nullptr};
  uint64_t scratchBytes[4] = {0, 0, 0, 0};
  /// bitmap-f32 weights: each row's first value (int64 [n], device), by (masks, n, k),
  /// computed on first use (the weights are constant for the session).
  std::map<std::tuple<const void *, int64_t, int64_t>, int64_t *> bitmapRowStarts;
};

/// Launches the work of one kernel on env.stream. Returns "" or an error
/// naming the node (use cudaError()/blasError() for library failures).
using DeviceKernelFn = std::string (*)(cpu::KernelContext &context, CudaEnv &env);
/// Empty when the kernel can run spec.kernels[k] (operand dtypes, attributes), else why not.
using DeviceCheckFn = std::string (*)(const artifact::ArtifactSpec &spec, const artifact::KernelSpec &kernel);

struct DeviceKernel {
  DeviceKernelFn run = nullptr;
  DeviceCheckFn check = nullptr; // null: every instance of (op, format) is supported
};

void addDeviceKernel(const std::string &op, const std::string &weightFormat, DeviceKernel kernel);
const DeviceKernel *findDeviceKernel(const std::string &op, const std::string &weightFormat);

// Each kernel family registers itself (called once when the plugin loads).
void registerLinearKernels();  // LinearKernels.cu: linear in every weight format, matmul
void registerGraphKernels();   // GraphKernels.cu: everything else

/// LATHE_CUDA_GEMM's value (null or "" or "exact": false; "tensor": true), or an error naming it.
std::string parseGemmMode(const char *value, bool &tensor);

/// "node 'x' (op): <what> failed: <cuda error string>", or "" when status is cudaSuccess.
std::string cudaError(const cpu::KernelContext &context, const char *what, cudaError_t status);
std::string blasError(const cpu::KernelContext &context, const char *what, cublasStatus_t status);
/// After a launch: reports a launch-configuration error (cudaGetLastError).
std::string launchError(const cpu::KernelContext &context, const char *kernelName);

} // namespace lathe::cuda
