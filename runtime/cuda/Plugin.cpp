// The CUDA plugin (liblathe-cuda.so): implements device::Backend with the
// CUDA runtime and cuBLAS, and the device kernel table the kernel families
// (LinearKernels.cu, GraphKernels.cu) fill. The runtime loads it with dlopen
// only when a session asks for `cuda`, so the runtime itself never links CUDA.
#include "runtime/core/Device.h"
#include "runtime/cuda/CudaBackend.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

namespace lathe::cuda {

namespace {

struct Table {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, DeviceKernel> kernels;
  std::once_flag filled;
};
Table &table() {
  static Table *t = new Table;
  return *t;
}
/// Every lookup waits until both families have registered (sessions may open concurrently).
void fillTable() {
  std::call_once(table().filled, [] {
    registerLinearKernels();
    registerGraphKernels();
  });
}

std::string where(const cpu::KernelContext &c) { return "node '" + c.spec->source + "' (" + c.spec->op + ")"; }

} // namespace

void addDeviceKernel(const std::string &op, const std::string &weightFormat, DeviceKernel kernel) {
  Table &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.kernels[{op, weightFormat}] = kernel;
}

const DeviceKernel *findDeviceKernel(const std::string &op, const std::string &weightFormat) {
  fillTable();
  Table &t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto it = t.kernels.find({op, weightFormat.empty() ? "f32" : weightFormat});
  return it == t.kernels.end() ? nullptr : &it->second;
}

std::string cudaError(const cpu::KernelContext &c, const char *what, cudaError_t status) {
  if (status == cudaSuccess) return "";
  return where(c) + ": " + what + " failed: " + cudaGetErrorString(status);
}

std::string blasError(const cpu::KernelContext &c, const char *what, cublasStatus_t status) {
  if (status == CUBLAS_STATUS_SUCCESS) return "";
  return where(c) + ": " + what + " failed: " + cublasGetStatusString(status);
}

std::string launchError(const cpu::KernelContext &c, const char *kernelName) {
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) return "";
  return where(c) + ": launching " + kernelName + " failed: " + cudaGetErrorString(status);
}

std::string parseGemmMode(const char *value, bool &tensor) {
  const std::string v = value ? value : "";
  tensor = v == "tensor";
  if (v.empty() || v == "exact" || v == "tensor") return "";
  return "LATHE_CUDA_GEMM is '" + v + "'; expected exact (fp32, the default) or tensor (TF32/bf16/fp16 tensor cores)";
}

void *CudaEnv::scratch(int slot, uint64_t bytes, std::string &error) {
  if (slot < 0 || slot > 3) {
    error = "scratch slot " + std::to_string(slot) + " out of range";
    return nullptr;
  }
  if (scratchBytes[slot] >= bytes && scratchBuffers[slot]) return scratchBuffers[slot];
  // Grow-only; the old buffer may still be read by queued work, so wait first.
  if (scratchBuffers[slot]) {
    cudaStreamSynchronize(stream);
    cudaFree(scratchBuffers[slot]);
    scratchBuffers[slot] = nullptr;
    scratchBytes[slot] = 0;
  }
  uint64_t size = std::max<uint64_t>(bytes, 1 << 20);
  if (cudaError_t s = cudaMalloc(&scratchBuffers[slot], size); s != cudaSuccess) {
    error = "cannot allocate " + std::to_string(size >> 20) + " MiB of device scratch: " + cudaGetErrorString(s);
    scratchBuffers[slot] = nullptr;
    return nullptr;
  }
  scratchBytes[slot] = size;
  return scratchBuffers[slot];
}

namespace {

class CudaBackend final : public device::Backend {
public:
  ~CudaBackend() override {
    if (env_.stream) cudaStreamSynchronize(env_.stream);
    for (void *p : env_.scratchBuffers) if (p) cudaFree(p);
    for (auto &entry : env_.bitmapRowStarts) cudaFree(entry.second);
    if (env_.blasLt) cublasLtDestroy(env_.blasLt);
    if (env_.blas) cublasDestroy(env_.blas);
    if (env_.stream) cudaStreamDestroy(env_.stream);
  }

  std::string open(int ordinal) {
    // A bad setting is an error before anything else (with or without a device).
    if (std::string e = parseGemmMode(std::getenv("LATHE_CUDA_GEMM"), env_.tensorMath); !e.empty()) return e;
    int count = 0;
    if (cudaError_t s = cudaGetDeviceCount(&count); s != cudaSuccess)
      return std::string("no usable CUDA device: ") + cudaGetErrorString(s);
    if (count == 0) return "no CUDA device found";
    if (ordinal < 0 || ordinal >= count)
      return "CUDA device " + std::to_string(ordinal) + " does not exist (this machine has " + std::to_string(count) + ")";
    if (cudaError_t s = cudaSetDevice(ordinal); s != cudaSuccess) return std::string("cudaSetDevice: ") + cudaGetErrorString(s);
    ordinal_ = ordinal;
    if (cudaError_t s = cudaGetDeviceProperties(&env_.properties, ordinal); s != cudaSuccess)
      return std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(s);
    const cudaDeviceProp &p = env_.properties;
    if (p.major < 8)
      return std::string("CUDA device '") + p.name + "' is sm_" + std::to_string(p.major * 10 + p.minor) +
             "; this build has kernels for sm_80 and newer";
    if (cudaError_t s = cudaStreamCreateWithFlags(&env_.stream, cudaStreamNonBlocking); s != cudaSuccess)
      return std::string("cudaStreamCreate: ") + cudaGetErrorString(s);
    if (cublasStatus_t s = cublasCreate(&env_.blas); s != CUBLAS_STATUS_SUCCESS)
      return std::string("cublasCreate: ") + cublasGetStatusString(s);
    cublasSetStream(env_.blas, env_.stream);
    // Outputs are compared with the CPU path: fp32 GEMMs stay in full fp32
    // (the default math mode with CUBLAS_COMPUTE_32F never uses TF32) unless
    // LATHE_CUDA_GEMM=tensor asks for CUBLAS_COMPUTE_32F_FAST_TF32 per call.
    cublasSetMathMode(env_.blas, CUBLAS_DEFAULT_MATH);
    if (cublasStatus_t s = cublasLtCreate(&env_.blasLt); s != CUBLAS_STATUS_SUCCESS)
      return std::string("cublasLtCreate: ") + cublasGetStatusString(s);
    info_.name = p.name;
    info_.computeMajor = p.major;
    info_.computeMinor = p.minor;
    info_.memoryBytes = p.totalGlobalMem;
    info_.multiprocessors = p.multiProcessorCount;
    int clockKHz = 0, busBits = 0;
    cudaDeviceGetAttribute(&clockKHz, cudaDevAttrMemoryClockRate, ordinal);
    cudaDeviceGetAttribute(&busBits, cudaDevAttrGlobalMemoryBusWidth, ordinal);
    info_.peakBandwidthGBs = 2.0 * double(clockKHz) * 1e3 * double(busBits) / 8.0 / 1e9;
    return "";
  }

  const device::DeviceInfo &info() const override { return info_; }

  void *allocate(uint64_t bytes, std::string &error) override {
    void *p = nullptr;
    if (cudaError_t s = cudaMalloc(&p, bytes ? bytes : 64); s != cudaSuccess) {
      error = "cannot allocate " + std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB on " + info_.name + ": " + cudaGetErrorString(s);
      return nullptr;
    }
    return p;
  }
  void release(void *pointer) override {
    if (pointer) cudaFree(pointer);
  }
  std::string upload(void *device, const void *host, uint64_t bytes) override {
    if (!bytes) return "";
    // Synchronous with respect to the host buffer (it may be freed after the call).
    cudaError_t s = cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, env_.stream);
    if (s == cudaSuccess) s = cudaStreamSynchronize(env_.stream);
    return s == cudaSuccess ? "" : std::string("copy to the device: ") + cudaGetErrorString(s);
  }
  std::string download(void *host, const void *device, uint64_t bytes) override {
    if (!bytes) return "";
    cudaError_t s = cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, env_.stream);
    if (s == cudaSuccess) s = cudaStreamSynchronize(env_.stream);
    return s == cudaSuccess ? "" : std::string("copy from the device: ") + cudaGetErrorString(s);
  }
  std::string zero(void *device, uint64_t bytes) override {
    if (!bytes) return "";
    cudaError_t s = cudaMemsetAsync(device, 0, bytes, env_.stream);
    return s == cudaSuccess ? "" : std::string("cudaMemset: ") + cudaGetErrorString(s);
  }
  std::string synchronize() override {
    cudaError_t s = cudaStreamSynchronize(env_.stream);
    return s == cudaSuccess ? "" : std::string("CUDA: ") + cudaGetErrorString(s);
  }
  std::string run(cpu::KernelContext &context) override {
    const DeviceKernel *k = findDeviceKernel(context.spec->op, context.spec->weightFormat);
    if (!k || !k->run)
      return where(context) + ": no CUDA kernel for weight format '" + context.spec->weightFormat + "'";
    return k->run(context, env_);
  }

private:
  int ordinal_ = 0;
  CudaEnv env_;
  device::DeviceInfo info_;
};

std::string unsupported(const artifact::ArtifactSpec &spec, size_t index) {
  const artifact::KernelSpec &kernel = spec.kernels[index];
  const DeviceKernel *k = findDeviceKernel(kernel.op, kernel.weightFormat);
  if (!k) return "no CUDA kernel for " + kernel.op + (kernel.weightFormat == "f32" ? "" : " (" + kernel.weightFormat + ")");
  return k->check ? k->check(spec, kernel) : "";
}

std::unique_ptr<device::Backend> openBackend(int ordinal, std::string &error) {
  fillTable();
  auto backend = std::make_unique<CudaBackend>();
  if (std::string err = backend->open(ordinal); !err.empty()) {
    error = err;
    return nullptr;
  }
  return backend;
}

#define LATHE_STR2(x) #x
#define LATHE_STR(x) LATHE_STR2(x)
const device::PluginApi api = {
    device::kPluginAbi, "cuda",
    "CUDA " LATHE_STR(CUDART_VERSION) ", archs " LATHE_CUDA_ARCHS_STRING,
    unsupported, openBackend};

} // namespace
} // namespace lathe::cuda

extern "C" __attribute__((visibility("default"))) const lathe::device::PluginApi *lathe_device_plugin(int abi) {
  return abi == lathe::device::kPluginAbi ? &lathe::cuda::api : nullptr;
}
