// A stand-in device plugin for testing the runtime's device path on machines
// without a GPU: "device" memory is host memory handed out at a non-canonical
// address (so any host code that dereferences a device pointer faults at
// once), kernels are the CPU kernels run on translated pointers, and ops
// listed in LATHE_FAKE_HOST_OPS (comma-separated) report no device kernel, so
// the runtime's host fallback runs for them. Loaded with
// LATHE_CUDA_PLUGIN=<path to liblathe-fake-cuda.so>.
#include "runtime/core/Device.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace {

using namespace lathe;

// Device addresses are host addresses with this bit set: not canonical on x86-64.
constexpr uintptr_t kTag = uintptr_t(1) << 62;
void *toDevice(void *host) { return host ? reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(host) | kTag) : nullptr; }
void *toHost(const void *device) {
  uintptr_t p = reinterpret_cast<uintptr_t>(device);
  return p ? reinterpret_cast<void *>(p & ~kTag) : nullptr;
}
bool isDevice(const void *p) { return p && (reinterpret_cast<uintptr_t>(p) & kTag); }

std::set<std::string> hostOps() {
  std::set<std::string> out;
  if (const char *env = std::getenv("LATHE_FAKE_HOST_OPS")) {
    std::stringstream s(env);
    std::string op;
    while (std::getline(s, op, ',')) if (!op.empty()) out.insert(op);
  }
  return out;
}

class FakeBackend final : public device::Backend {
public:
  FakeBackend() {
    info_.name = "Fake test device";
    info_.computeMajor = 9;
    info_.memoryBytes = 1ull << 34;
    info_.multiprocessors = 1;
  }
  ~FakeBackend() override {
    if (!live_.empty()) std::fprintf(stderr, "fake device: %zu allocations leaked\n", live_.size());
  }
  const device::DeviceInfo &info() const override { return info_; }
  void *allocate(uint64_t bytes, std::string &) override {
    void *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    std::memset(p, 0xA5, (bytes + 63) / 64 * 64 + 64); // garbage, like fresh device memory
    live_.insert(p);
    return toDevice(p);
  }
  void release(void *pointer) override {
    void *p = toHost(pointer);
    if (!live_.erase(p)) { std::fprintf(stderr, "fake device: release of a pointer it did not allocate\n"); std::abort(); }
    std::free(p);
  }
  std::string upload(void *device, const void *host, uint64_t bytes) override {
    if (!bytes) return "";
    if (!isDevice(device) || isDevice(host)) return "fake device: upload with swapped pointers";
    std::memcpy(toHost(device), host, bytes);
    return "";
  }
  std::string download(void *host, const void *device, uint64_t bytes) override {
    if (!bytes) return "";
    if (!isDevice(device) || isDevice(host)) return "fake device: download with swapped pointers";
    std::memcpy(host, toHost(device), bytes);
    return "";
  }
  std::string zero(void *device, uint64_t bytes) override {
    if (!isDevice(device)) return "fake device: zero of a host pointer";
    std::memset(toHost(device), 0, bytes);
    return "";
  }
  std::string synchronize() override { return ""; }
  std::string run(cpu::KernelContext &c) override {
    const cpu::KernelEntry *entry = cpu::findKernel(c.spec->op, c.spec->weightFormat, "cpu");
    if (!entry) return "fake device: no kernel for " + c.spec->op;
    // Every operand must be on the device: a host pointer here is a runtime bug.
    std::vector<cpu::View> ins, outs;
    ins.reserve(c.inputs.size());
    outs.reserve(c.outputs.size());
    cpu::KernelContext h = c;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      if (!c.inputs[i]) continue;
      if (c.inputs[i]->numel() && !isDevice(c.inputs[i]->data))
        return "fake device: node '" + c.spec->source + "' operand " + std::to_string(i) + " is not in device memory";
      ins.push_back(*c.inputs[i]);
      ins.back().data = toHost(c.inputs[i]->data);
      h.inputs[i] = &ins.back();
    }
    for (size_t o = 0; o < c.outputs.size(); ++o) {
      if (c.outputs[o]->numel() && !isDevice(c.outputs[o]->data))
        return "fake device: node '" + c.spec->source + "' result " + std::to_string(o) + " is not in device memory";
      outs.push_back(*c.outputs[o]);
      outs.back().data = toHost(c.outputs[o]->data);
      h.outputs[o] = &outs.back();
    }
    h.packedWeight = nullptr;
    cpu::KvCache cache;
    if (c.cache) {
      if (!isDevice(c.cache->k) || !isDevice(c.cache->v) || c.cache->kHeadFloats || c.cache->vHeadFloats)
        return "fake device: the KV cache is not a plain device cache";
      cache = *c.cache;
      cache.k = static_cast<float *>(toHost(c.cache->k));
      cache.v = static_cast<float *>(toHost(c.cache->v));
      h.cache = &cache;
    }
    return entry->run(h);
  }

private:
  device::DeviceInfo info_;
  std::set<void *> live_;
};

std::string unsupported(const artifact::ArtifactSpec &spec, size_t k) {
  static const std::set<std::string> hosted = hostOps();
  const auto &kernel = spec.kernels[k];
  if (hosted.count(kernel.op)) return "listed in LATHE_FAKE_HOST_OPS";
  if (!cpu::findKernel(kernel.op, kernel.weightFormat, "cpu")) return "no kernel";
  return "";
}

std::unique_ptr<device::Backend> open(int ordinal, std::string &error) {
  if (const char *none = std::getenv("LATHE_FAKE_NO_DEVICE"); none && *none) {
    error = "no usable CUDA device: fake plugin told to have none";
    return nullptr;
  }
  if (ordinal != 0) {
    error = "CUDA device " + std::to_string(ordinal) + " does not exist (this machine has 1)";
    return nullptr;
  }
  return std::make_unique<FakeBackend>();
}

const device::PluginApi api = {device::kPluginAbi, "cuda", "fake test device", unsupported, open};

} // namespace

extern "C" __attribute__((visibility("default"))) const lathe::device::PluginApi *lathe_device_plugin(int abi) {
  return abi == lathe::device::kPluginAbi ? &api : nullptr;
}
