// A compute device other than the host CPU, provided by a plugin that the
// runtime loads at run time (dlopen), so one runtime binary runs on machines
// without the device's libraries and says so plainly when asked for it.
//
// The plugin and the runtime are built together by this project: the
// interface is C++ (same compiler, same headers) guarded by kPluginAbi.
// Plain C++ only: no CUDA or MLIR headers here.
#pragma once

#include "runtime/artifact/ArtifactSpec.h"
#include "runtime/cpu/Kernels.h"

#include <memory>
#include <string>

namespace lathe::device {

/// Bumped whenever Backend, PluginApi or cpu::KernelContext change layout.
constexpr int kPluginAbi = 2;
/// The symbol every plugin exports: `extern "C" const PluginApi *lathe_device_plugin(int abi)`.
/// Returns null when `abi` differs from the plugin's.
inline constexpr const char *kPluginEntry = "lathe_device_plugin";

struct DeviceInfo {
  std::string name;            // "NVIDIA H200"
  int computeMajor = 0, computeMinor = 0;
  uint64_t memoryBytes = 0;
  int multiprocessors = 0;
  double peakBandwidthGBs = 0; // from the memory clock and bus width (0: unknown)
  std::string describe() const; // "NVIDIA H200 (sm_90, 139.8 GiB, 132 SMs)"
};

/// One device, opened for one session. Every call runs on the backend's own
/// stream in submission order; download() waits for the work before it.
class Backend {
public:
  virtual ~Backend() = default;
  virtual const DeviceInfo &info() const = 0;

  /// Device memory (never managed/unified). Null and `error` set on failure.
  virtual void *allocate(uint64_t bytes, std::string &error) = 0;
  virtual void release(void *pointer) = 0;
  virtual std::string upload(void *device, const void *host, uint64_t bytes) = 0;
  virtual std::string download(void *host, const void *device, uint64_t bytes) = 0;
  virtual std::string zero(void *device, uint64_t bytes) = 0;
  /// Waits for all submitted work; reports a kernel fault raised since the last call.
  virtual std::string synchronize() = 0;

  /// Runs one kernel. The context is the CPU kernels' (shapes already
  /// resolved by the CPU shape functions), but every View's data, the KV
  /// cache and the outputs are device pointers. `pool`, `isa` and
  /// `packedWeight` are not used. The cache is in the plain layout
  /// [batch, kv_heads, capacity, head_dim] (kHeadFloats == 0).
  virtual std::string run(cpu::KernelContext &context) = 0;
};

struct PluginApi {
  int abi = kPluginAbi;
  const char *device = "";  // "cuda"
  const char *build = "";   // what the plugin was built for: "CUDA 13.0, sm_80 sm_90"
  /// Empty when the device has a kernel for spec.kernels[kernel] (its op,
  /// weight format and operand dtypes); otherwise why not, in a phrase.
  /// Needs no device (lathe inspect calls it on any machine).
  std::string (*unsupported)(const artifact::ArtifactSpec &spec, size_t kernel) = nullptr;
  /// Opens device `ordinal`; null and `error` set when there is no usable device.
  std::unique_ptr<Backend> (*open)(int ordinal, std::string &error) = nullptr;
};

/// Loads the plugin for `device` ("cuda"), once per process. Looks at env
/// LATHE_CUDA_PLUGIN (a file path), then liblathe-cuda.so in the executable's
/// directory, its ../lib, and the directory of the library holding this code.
/// Null and `error` set (naming every place tried) when it cannot be loaded.
const PluginApi *loadPlugin(const std::string &device, std::string &error, std::string *loadedFrom = nullptr);

} // namespace lathe::device
