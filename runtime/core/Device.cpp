#include "runtime/core/Device.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <climits>
#include <cstdlib>
#include <mutex>

namespace lathe::device {

std::string DeviceInfo::describe() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB, %d SMs)", name.c_str(), computeMajor, computeMinor,
                double(memoryBytes) / double(1ull << 30), multiprocessors);
  return buf;
}

namespace {

std::string directoryOf(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string executableDirectory() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = 0;
  return directoryOf(buf);
}

struct Loaded {
  std::once_flag once;
  const PluginApi *api = nullptr;
  std::string error, path;
};

void load(const std::string &device, Loaded &out) {
  const std::string file = "liblathe-" + device + ".so";
  std::vector<std::string> candidates;
  std::string envName = "LATHE_" + std::string(device == "cuda" ? "CUDA" : device) + "_PLUGIN";
  if (const char *env = std::getenv(envName.c_str()); env && *env) {
    candidates.push_back(env); // an explicit choice: nothing else is tried
  } else {
    std::string exe = executableDirectory();
    if (!exe.empty()) {
      candidates.push_back(exe + "/" + file);
      candidates.push_back(exe + "/../lib/" + file);
    }
    Dl_info self{};
    if (dladdr(reinterpret_cast<void *>(&loadPlugin), &self) && self.dli_fname) {
      // Differs from the executable's directory when the runtime is a shared library (a Python binding).
      char resolved[4096];
      if (realpath(directoryOf(self.dli_fname).c_str(), resolved) && std::string(resolved) != exe)
        candidates.push_back(std::string(resolved) + "/" + file);
    }
  }
  std::string tried;
  for (const std::string &path : candidates) {
    if (access(path.c_str(), F_OK) != 0) {
      tried += (tried.empty() ? "" : ", ") + path + " (absent)";
      continue;
    }
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *why = dlerror();
      tried += (tried.empty() ? "" : ", ") + path + " (" + (why ? why : "dlopen failed") + ")";
      continue;
    }
    auto entry = reinterpret_cast<const PluginApi *(*)(int)>(dlsym(handle, kPluginEntry));
    const PluginApi *api = entry ? entry(kPluginAbi) : nullptr;
    if (!api) {
      tried += (tried.empty() ? "" : ", ") + path + (entry ? " (built for another runtime version)" : " (not a Lathe plugin)");
      dlclose(handle);
      continue;
    }
    out.api = api;
    out.path = path;
    return; // kept loaded for the life of the process
  }
  out.error = "the " + device + " backend plugin " + file + " could not be loaded: tried " + tried +
              (device == "cuda" ? "; this runtime was built without CUDA or the plugin was not installed next to it" : "");
}

} // namespace

const PluginApi *loadPlugin(const std::string &device, std::string &error, std::string *loadedFrom) {
  if (device != "cuda") {
    error = "unknown device '" + device + "' (devices: cpu, cuda)";
    return nullptr;
  }
  static Loaded cuda;
  std::call_once(cuda.once, [&] { load(device, cuda); });
  if (!cuda.api) error = cuda.error;
  if (loadedFrom) *loadedFrom = cuda.path;
  return cuda.api;
}

} // namespace lathe::device
