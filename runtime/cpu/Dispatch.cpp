#include "runtime/cpu/Kernels.h"

#include <cstdlib>

namespace lathe::cpu {

static bool cpuHas(const std::string &level) {
  __builtin_cpu_init();
  if (level == "baseline") return true;
  if (level == "avx2")
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  if (level == "avx512")
    return cpuHas("avx2") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return false;
}

std::vector<std::string> supportedIsas() {
  std::vector<std::string> out;
  for (const char *l : {"baseline", "avx2", "avx512"})
    if (cpuHas(l)) out.push_back(l);
  return out;
}

const IsaTable *isaByName(const std::string &name) {
  if (name == "baseline") return baseline::table();
  if (name == "avx2") return avx2::table();
  if (name == "avx512") return avx512::table();
  return nullptr;
}

const IsaTable *selectIsa(const std::string &forced, std::string &error) {
  std::string level = forced;
  std::string origin = "the session options";
  if (level.empty()) {
    if (const char *env = std::getenv("LATHE_ISA"); env && *env) {
      level = env;
      origin = "LATHE_ISA";
    }
  }
  if (level.empty()) return isaByName(supportedIsas().back());
  if (!isaByName(level)) {
    error = origin + " asks for instruction set '" + level + "'; known levels are baseline, avx2, avx512";
    return nullptr;
  }
  if (!cpuHas(level)) {
    error = origin + " asks for instruction set '" + level + "' but this CPU does not support it";
    return nullptr;
  }
  return isaByName(level);
}

} // namespace lathe::cpu
