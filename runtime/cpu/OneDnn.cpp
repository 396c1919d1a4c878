#include "runtime/cpu/OneDnn.h"

#include "runtime/cpu/CpuFeatures.h"

#include <cstdlib>
#include <cstring>
#include <dlfcn.h>

namespace lathe::cpu {

namespace {

// dnnl_version_t and the dnnl_cpu_isa_t values of oneDNN 2.x (dnnl_types.h).
struct DnnlVersion {
  int major, minor, patch;
  const char *hash;
  unsigned cpuRuntime, gpuRuntime;
};
constexpr int kDnnlIsaAvx2 = 0x7;

struct Loaded {
  Sgemm sgemm;
  std::string error; // why it is not available
};

const Loaded &load() {
  static const Loaded loaded = [] {
    Loaded l;
    void *handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char *why = dlerror();
      l.error = std::string("libdnnl.so.2 does not load (") + (why ? why : "dlopen failed") + "); Debian: apt-get install libdnnl2";
      return l;
    }
    auto sgemm = reinterpret_cast<decltype(Sgemm::sgemm)>(dlsym(handle, "dnnl_sgemm"));
    auto version = reinterpret_cast<const DnnlVersion *(*)()>(dlsym(handle, "dnnl_version"));
    auto maxIsa = reinterpret_cast<int (*)(int)>(dlsym(handle, "dnnl_set_max_cpu_isa"));
    if (!sgemm || !version) {
      l.error = "libdnnl.so.2 has no dnnl_sgemm/dnnl_version";
      return l;
    }
    const DnnlVersion *v = version();
    if (!v || v->major < 2) {
      l.error = "libdnnl.so.2 is older than oneDNN 2";
      return l;
    }
    // LATHE_ISA_MAX=avx2 caps oneDNN too, before its first primitive (so this
    // machine can pose as one without AVX-512); =baseline never uses it.
    if (!cpuRunsLevel("avx512") && cpuRunsLevel("avx2") && maxIsa) maxIsa(kDnnlIsaAvx2);
    l.sgemm.sgemm = sgemm;
    // oneDNN's OpenMP runtime is loaded with it (libgomp): found through the same handle's dependencies.
    l.sgemm.setThreads = reinterpret_cast<void (*)(int)>(dlsym(handle, "omp_set_num_threads"));
    l.sgemm.name = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    return l;
  }();
  return loaded;
}

/// auto | own | onednn, or "" with `error` for another value.
std::string mode(std::string &error) {
  const char *env = std::getenv("LATHE_GEMM");
  std::string m = env && *env ? env : "auto";
  if (m != "auto" && m != "own" && m != "onednn") {
    error = "LATHE_GEMM is '" + m + "'; expected auto, own or onednn";
    return "";
  }
  return m;
}

} // namespace

const Sgemm *sgemmFor(const char *level, std::string &error) {
  const std::string m = mode(error);
  if (m.empty() || m == "own") return nullptr;
  const bool best = std::strcmp(level, "baseline") != 0 && !(std::strcmp(level, "avx2") == 0 && cpuRunsLevel("avx512"));
  if (!best) {
    if (m == "onednn") error = std::string("LATHE_GEMM=onednn needs the best instruction-set level this CPU runs, not ") + level;
    return nullptr;
  }
  const Loaded &l = load();
  if (!l.error.empty()) {
    if (m == "onednn") error = "LATHE_GEMM=onednn: " + l.error;
    return nullptr;
  }
  return &l.sgemm;
}

std::string sgemmSummary() {
  std::string error;
  const char *best = cpuRunsLevel("avx512") ? "avx512" : cpuRunsLevel("avx2") ? "avx2" : "baseline";
  const Sgemm *s = sgemmFor(best, error);
  if (s) return s->name + " (libdnnl.so.2)";
  if (!error.empty()) return "Lathe's own (" + error + ")";
  const std::string m = mode(error);
  if (m == "own") return "Lathe's own (LATHE_GEMM=own)";
  if (std::strcmp(best, "baseline") == 0) return "Lathe's own (baseline level)";
  return "Lathe's own (" + load().error + ")";
}

} // namespace lathe::cpu
